"""aedissect.metrics: properties that must hold, and agreement with independent computations."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.stats import ortho_group

from aedissect import metrics


def rng(seed=0):
    return np.random.default_rng(seed)


def embed(Z, ambient, seed=0):
    """Z linearly embedded in a larger space by a random orthonormal map."""
    basis = ortho_group.rvs(ambient, random_state=seed)[: Z.shape[1]]
    return Z @ basis


def unit_sphere(n, d, seed=0):
    """n points uniform on the d-sphere S^d in R^(d+1)."""
    g = rng(seed).normal(size=(n, d + 1))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


# ---- CKA ----


def cka_gram(X, Y):
    """Linear CKA from n x n Gram matrices and the centring matrix: HSIC = tr(K H L H)."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    hsic = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def cka_gram_debiased(X, Y):
    """Debiased CKA from the Gram matrices, written out term by term (Song et al. 2012)."""
    n = X.shape[0]
    X, Y = X - X.mean(0), Y - Y.mean(0)

    def hsic_u(K, L):
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        return (
            np.trace(K @ L)
            + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ K @ L @ one)
        ) / (n * (n - 3))

    K, L = X @ X.T, Y @ Y.T
    return hsic_u(K, L) / np.sqrt(hsic_u(K, K) * hsic_u(L, L))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_maps_and_scaling(debiased):
    X = rng(1).normal(size=(300, 12))
    Q = ortho_group.rvs(12, random_state=2)
    assert metrics.linear_cka(X, X @ Q, debiased) == pytest.approx(1.0, abs=1e-10)
    assert metrics.linear_cka(X, 3.7 * X, debiased) == pytest.approx(1.0, abs=1e-10)
    assert metrics.linear_cka(X, X + 5.0, debiased) == pytest.approx(1.0, abs=1e-10)  # centring


def test_cka_not_invariant_to_arbitrary_linear_maps():
    X = rng(3).normal(size=(500, 6))
    A = np.diag([10.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    assert metrics.linear_cka(X, X @ A) < 0.9


def test_cka_symmetric_bounded_and_equal_to_gram_formula():
    r = rng(4)
    for _ in range(5):
        X = r.normal(size=(80, int(r.integers(2, 20))))
        Y = np.tanh(X @ r.normal(size=(X.shape[1], int(r.integers(2, 20))))) + r.normal(size=(80, 1))
        c = metrics.linear_cka(X, Y)
        assert c == pytest.approx(metrics.linear_cka(Y, X), abs=1e-12)
        assert 0.0 <= c <= 1.0
        assert c == pytest.approx(cka_gram(X - X.mean(0), Y - Y.mean(0)), rel=1e-9)
        assert metrics.linear_cka(X, Y, debiased=True) == pytest.approx(cka_gram_debiased(X, Y), rel=1e-9)


def test_debiased_cka_near_zero_for_independent_data_where_plain_cka_is_not():
    r = rng(5)
    X, Y = r.normal(size=(200, 150)), r.normal(size=(200, 150))  # wide, few samples: plain CKA is biased up
    assert abs(metrics.linear_cka(X, Y, debiased=True)) < 0.05
    assert metrics.linear_cka(X, Y) > 0.3


def test_cka_constant_side_is_nan_and_tensor_input_agrees():
    X = rng(6).normal(size=(50, 4))
    assert np.isnan(metrics.linear_cka(X, np.ones((50, 3))))
    Y = X[:, :2] ** 2
    assert metrics.linear_cka(torch.tensor(X, dtype=torch.float32), torch.tensor(Y)) == pytest.approx(
        metrics.linear_cka(X.astype(np.float32), Y), rel=1e-12
    )
    with pytest.raises(ValueError, match="same samples"):
        metrics.linear_cka(X, X[:10])


def test_cka_matrix_is_the_gram_formula_of_every_pair():
    """All pairs from one stacked product: each entry equals the Gram-matrix CKA of its pair, plain and
    debiased, across widths, with a constant matrix giving NaN in its row and column only."""
    r = rng(27)
    X = r.normal(size=(60, 5))
    As = [X, np.tanh(X @ r.normal(size=(5, 9))), r.normal(size=(60, 1)), np.ones((60, 2))]
    Bs = [X[:, :2] ** 2, r.normal(size=(60, 7)) + X[:, :1], X]
    plain, debiased = metrics.linear_cka_matrix(As, Bs), metrics.linear_cka_matrix(As, Bs, debiased=True)
    assert plain.shape == debiased.shape == (4, 3)
    assert np.isnan(plain[3]).all() and np.isnan(debiased[3]).all()
    for i, a in enumerate(As[:3]):
        for j, b in enumerate(Bs):
            assert plain[i, j] == pytest.approx(cka_gram(a - a.mean(0), b - b.mean(0)), rel=1e-9)
            assert debiased[i, j] == pytest.approx(cka_gram_debiased(a, b), rel=1e-9)
    within = metrics.linear_cka_matrix(As[:3], As[:3])
    np.testing.assert_allclose(within, within.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(within), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="same samples"):
        metrics.linear_cka_matrix(As, [X[:10]])


# ---- participation ratio and PCA dimension ----


def test_participation_ratio_isotropic_rank_one_and_eigen_formula():
    X = rng(7).normal(size=(20000, 10))
    assert metrics.participation_ratio(X) == pytest.approx(10.0, rel=0.03)
    v = rng(8).normal(size=(1, 16))
    assert metrics.participation_ratio(rng(9).normal(size=(500, 1)) @ v) == pytest.approx(1.0, abs=1e-9)
    H = rng(10).normal(size=(300, 7)) @ rng(11).normal(size=(7, 7))
    lam = np.linalg.eigvalsh(np.cov(H, rowvar=False))
    assert metrics.participation_ratio(H) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-10)
    assert np.isnan(metrics.participation_ratio(np.ones((10, 3))))


def test_pca_dimension_counts_components():
    # exact variances 6, 3, 1 on orthogonal directions (+/-1 patterns), embedded in 8-D
    base = np.array(
        [[1, 1, 1], [1, -1, 1], [-1, 1, 1], [-1, -1, -1], [1, 1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]
    )
    base = base - base.mean(0)
    base = base / base.std(0) * np.sqrt([6.0, 3.0, 1.0])
    H = embed(np.tile(base, (50, 1)), 8, seed=12)
    assert metrics.pca_dimension(H, 0.5) == 1  # 6/10
    assert metrics.pca_dimension(H, 0.6) == 1  # exactly reached counts
    assert metrics.pca_dimension(H, 0.9) == 2
    assert metrics.pca_dimension(H, 0.99) == 3
    assert metrics.pca_dimension(np.ones((5, 2))) == 0
    with pytest.raises(ValueError):
        metrics.pca_dimension(H, 0.0)


# ---- TwoNN ----


def test_two_nearest_distances_match_a_kd_tree():
    H = rng(13).normal(size=(400, 6))
    dist, _ = cKDTree(H).query(H, k=3)
    np.testing.assert_allclose(metrics.two_nearest_distances(H), dist[:, 1:], rtol=1e-9)


@pytest.mark.parametrize("d", [2, 5])
def test_twonn_recovers_uniform_linear_embedding(d):
    Z = rng(d).uniform(size=(2000, d))
    assert metrics.twonn_dimension(embed(Z, 20, seed=d)) == pytest.approx(d, rel=0.1)


@pytest.mark.parametrize("d", [2, 5])
def test_twonn_recovers_sphere(d):
    assert metrics.twonn_dimension(embed(unit_sphere(2000, d, seed=d), 12, seed=d)) == pytest.approx(d, rel=0.1)


def test_twonn_underestimates_high_dimension_at_few_thousand_points():
    """The known finite-sample bias (Facco et al. 2017): d = 20 from 2,000 points comes out clearly low."""
    estimate = metrics.twonn_dimension(rng(20).normal(size=(2000, 20)))
    assert 11.0 < estimate < 18.0


def test_twonn_invariant_to_similarity_maps_and_drops_duplicates():
    H = rng(21).uniform(size=(800, 3))
    Q = ortho_group.rvs(3, random_state=22)
    base = metrics.twonn_dimension(H)
    assert metrics.twonn_dimension(2.5 * H @ Q + 1.0) == pytest.approx(base, rel=1e-6)
    with_dupes = np.vstack([H, H[:50]])  # r1 = 0 for the duplicated points: they are dropped
    assert np.isfinite(metrics.twonn_dimension(with_dupes))
    spread = metrics.twonn_subsamples(H, n_subsamples=4, fraction=0.5, seed=0)
    assert spread.shape == (4,) and np.all(np.isfinite(spread)) and spread.std() > 0
    assert spread.mean() == pytest.approx(3.0, rel=0.15)
    np.testing.assert_array_equal(spread, metrics.twonn_subsamples(H, n_subsamples=4, fraction=0.5, seed=0))


# ---- ridge reconstruction ----


def test_probes_see_the_geometry_not_the_basis():
    """One scale for all features: a rotated cut gives the same probes (a per-unit scale would not, and would
    blow up a unit that is nearly constant on the fit data)."""
    r = rng(26)
    H = r.normal(size=(1200, 5)) * [5.0, 2.0, 1.0, 0.3, 0.01]
    X = np.tanh(H @ r.normal(size=(5, 6)))
    y = (H[:, 0] + H[:, 1] > 0).astype(int) + (H[:, 2] > 0)
    Q = ortho_group.rvs(5, random_state=27)
    fit, test = slice(0, 1000), slice(1000, None)
    a = metrics.ridge_reconstruction(H[fit], X[fit], H[test], X[test], lambdas=[1e-2])
    b = metrics.ridge_reconstruction((H @ Q)[fit], X[fit], (H @ Q)[test], X[test], lambdas=[1e-2])
    assert a["mse"] == pytest.approx(b["mse"], rel=1e-8)
    acc_a = metrics.linear_probe_accuracy(H[fit], y[fit], H[test], y[test], C=0.01)
    acc_b = metrics.linear_probe_accuracy((H @ Q)[fit], y[fit], (H @ Q)[test], y[test], C=0.01)
    assert acc_a == pytest.approx(acc_b, abs=0.01)


def test_ridge_from_identity_and_from_noise():
    r = rng(23)
    X = r.normal(size=(1500, 10)) @ r.normal(size=(10, 10))
    out = metrics.ridge_reconstruction(X[:1000], X[:1000], X[1000:], X[1000:])
    assert out["r2"] > 0.999 and out["mse"] < 1e-3 * X.var()
    assert out["lambda"] in metrics.DEFAULT_LAMBDAS
    noise = r.normal(size=(1500, 10))
    out = metrics.ridge_reconstruction(noise[:1000], X[:1000], noise[1000:], X[1000:])
    assert abs(out["r2"]) < 0.05
    assert out["r2_per_target"].shape == (10,)


def test_ridge_matches_scikit_learn_at_fixed_lambda():
    from sklearn.linear_model import Ridge

    r = rng(24)
    H, X = r.normal(size=(300, 5)) * [1, 2, 3, 4, 5], r.normal(size=(300, 3))
    X = X + H @ r.normal(size=(5, 3))
    lam = 0.05
    out = metrics.ridge_reconstruction(H[:200], X[:200], H[200:], X[200:], lambdas=[lam])
    mean, scale = H[:200].mean(0), np.sqrt(H[:200].var(0).mean())  # one scale for all features
    pred = Ridge(alpha=lam * 200).fit((H[:200] - mean) / scale, X[:200]).predict((H[200:] - mean) / scale)
    assert out["mse"] == pytest.approx(np.mean((pred - X[200:]) ** 2), rel=1e-8)


@pytest.mark.parametrize("lam", metrics.DEFAULT_LAMBDAS)
def test_ridge_from_the_gram_matrix_matches_scikit_learns_svd_on_degenerate_features(lam):
    """The weights come from an eigendecomposition of H'H, which squares the condition number: check the
    features where that could show (a dead unit, a duplicated one, scales 1e-3 to 10, fewer samples than
    features) at every default penalty against scikit-learn's SVD solver."""
    from sklearn.linear_model import Ridge

    r = rng(26)
    H = r.normal(size=(150, 8)) * np.logspace(-3, 1, 8)
    H = np.hstack([H, np.zeros((150, 1)), H[:, -1:]])
    X = H @ r.normal(size=(10, 4)) + 0.1 * r.normal(size=(150, 4))
    for n_fit in (120, 8):
        fit, test = slice(0, n_fit), slice(n_fit, None)
        out = metrics.ridge_reconstruction(H[fit], X[fit], H[test], X[test], lambdas=[lam])
        mean, scale = H[fit].mean(0), np.sqrt(H[fit].var(0).mean())
        sk = Ridge(alpha=lam * n_fit, solver="svd").fit((H[fit] - mean) / scale, X[fit])
        pred = sk.predict((H[test] - mean) / scale)
        assert out["mse"] == pytest.approx(np.mean((pred - X[test]) ** 2), rel=1e-9)
        sst = ((X[test] - X[test].mean(0)) ** 2).sum(0)
        np.testing.assert_allclose(out["r2_per_target"], 1 - ((pred - X[test]) ** 2).sum(0) / sst, rtol=1e-9)


# ---- label probe ----


def test_label_probe_separable_shuffled_and_agrees_with_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    r = rng(25)
    k, n = 5, 3000
    y = r.integers(0, k, size=n)
    H = r.normal(size=(n, 8)) + 3.0 * np.eye(k, 8)[y]
    fit, test = slice(0, 2000), slice(2000, n)
    acc = metrics.linear_probe_accuracy(H[fit], y[fit], H[test], y[test])
    assert acc > 0.9
    mean, scale = H[fit].mean(0), np.sqrt(H[fit].var(0).mean())
    ref = LogisticRegression(C=1.0, max_iter=1000).fit((H[fit] - mean) / scale, y[fit])
    assert acc == pytest.approx(np.mean(ref.predict((H[test] - mean) / scale) == y[test]), abs=0.01)
    shuffled = r.permutation(y)  # labels no longer carried by H, in the fit and the test split
    chance = metrics.linear_probe_accuracy(H[fit], shuffled[fit], H[test], shuffled[test])
    assert abs(chance - 1 / k) < 0.05
    labels = np.array(list("abcde"))[y]  # any label type
    assert metrics.linear_probe_accuracy(H[fit], labels[fit], H[test], labels[test]) == pytest.approx(acc)


def test_wider_than_long_activations_take_the_dual_and_give_the_primal_s_numbers():
    """A conv cut can be wider (4,096) than the probe split is long (1,000): the covariance eigenvalues, the
    participation ratio and the ridge fit then come from the points x points Gram matrix; they equal the
    features x features computation (numpy's, done here independently), zero eigenvalues included."""
    r = np.random.default_rng(0)
    H = r.normal(size=(100, 300)) @ r.normal(size=(300, 300)) * 0.1
    X = r.normal(size=(100, 5))
    Hc = H - H.mean(axis=0)
    cov = Hc.T @ Hc / 99
    expected = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    eig = metrics.covariance_eigenvalues(H)
    assert eig.shape == (300,) and np.all(eig[100:] == 0)
    np.testing.assert_allclose(eig, expected, atol=1e-9 * expected.max())
    assert metrics.participation_ratio(H) == pytest.approx(np.trace(cov) ** 2 / np.sum(cov**2), rel=1e-10)
    assert metrics.pca_dimension(H, 0.9) == int(np.searchsorted(np.cumsum(expected) / expected.sum(), 0.9) + 1)
    for lam in (1e-3, 1.0):
        ((w, b),) = metrics._ridge_fit(H, X, [lam])
        primal = np.linalg.solve(Hc.T @ Hc + lam * 100 * np.eye(300), Hc.T @ (X - X.mean(axis=0)))
        np.testing.assert_allclose(w, primal, atol=1e-10)
        np.testing.assert_allclose(b, X.mean(axis=0) - H.mean(axis=0) @ primal, atol=1e-10)
