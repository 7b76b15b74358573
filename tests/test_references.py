"""aedissect.references: the closed-form optima against independent computations (scikit-learn, scipy,
Monte Carlo, a numerical optimiser)."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.optimize import minimize
from scipy.stats import multivariate_normal, ortho_group
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge

from aedissect import references


def rng(seed=0):
    return np.random.default_rng(seed)


def anisotropic(n, scales, seed=0):
    """n Gaussian points with the given standard deviations along a random rotation, off the origin."""
    scales = np.asarray(scales, dtype=float)
    Q = ortho_group.rvs(scales.size, random_state=seed + 100)
    return (rng(seed).normal(size=(n, scales.size)) * scales) @ Q + rng(seed + 1).normal(size=scales.size)


def exact_covariance(n, eigenvalues, seed=0):
    """n points whose 1/n covariance is exactly Q diag(eigenvalues) Q' for a random rotation Q."""
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    d = eigenvalues.size
    G = rng(seed).normal(size=(n, d))
    G -= G.mean(axis=0)
    white = np.linalg.qr(G)[0] * np.sqrt(n)  # centred (G was), with X'X / n = I
    return white * np.sqrt(eigenvalues) @ ortho_group.rvs(d, random_state=seed + 100) + 3.0


# ---- PCA ----


def test_pca_mse_matches_scikit_learn():
    train, test = anisotropic(400, [3, 2, 1, 0.5, 0.2, 0.1]), anisotropic(300, [3, 2, 1, 0.5, 0.2, 0.1], seed=7)
    for z in (1, 3, 5):
        pca = PCA(n_components=z).fit(train)
        expected = np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2)
        ref = references.pca_reference(train, test, z)
        assert ref["mse"] == pytest.approx(expected, rel=1e-10)
        assert references.largest_principal_angle(ref["components"], pca.components_.T) < 1e-6


def test_pca_train_mse_is_the_discarded_eigenvalues_over_d():
    train = anisotropic(250, [2, 1.5, 1, 0.3, 0.1])
    expected_eig = np.linalg.eigvalsh(np.cov(train.T, bias=True))[::-1]
    for z in range(1, 6):
        ref = references.pca_reference(train, train, z)
        np.testing.assert_allclose(ref["eigenvalues"], expected_eig, rtol=1e-10, atol=1e-14)
        assert ref["mse"] == pytest.approx(expected_eig[z:].sum() / 5, rel=1e-9, abs=1e-14)
        np.testing.assert_allclose(ref["components"].T @ ref["components"], np.eye(z), atol=1e-12)


def test_pca_eigen_gap():
    train = exact_covariance(100, [4.0, 2.0, 0.5, 0.0])
    assert references.pca_reference(train, train, 1)["eigen_gap"] == pytest.approx(2.0)
    assert references.pca_reference(train, train, 2)["eigen_gap"] == pytest.approx(4.0)
    assert references.pca_reference(train, train, 3)["eigen_gap"] == np.inf
    assert np.isnan(references.pca_reference(train, train, 4)["eigen_gap"])  # lambda_4 = 0 and none after it
    assert references.pca_reference(train[:, :3], train[:, :3], 3)["eigen_gap"] == np.inf
    with pytest.raises(ValueError, match="latent size"):
        references.pca_reference(train, train, 5)


# ---- principal angles ----


def test_principal_angles_of_a_space_with_itself_and_its_complement():
    A = rng(1).normal(size=(7, 3))
    np.testing.assert_allclose(references.principal_angles(A, A @ rng(2).normal(size=(3, 3))), 0.0, atol=1e-6)
    E = np.eye(5)
    np.testing.assert_allclose(references.principal_angles(E[:, :2], E[:, 2:]), [90.0, 90.0])
    assert references.largest_principal_angle(E[:, :2], E[:, :3]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("theta", [1e-9, 0.3, 30.0, 44.9, 45.1, 89.0])
def test_principal_angle_of_a_known_rotation(theta):
    t = np.radians(theta)
    a, b = np.array([[1.0], [0.0]]), np.array([[np.cos(t)], [np.sin(t)]])
    assert references.principal_angles(a, b)[0] == pytest.approx(theta, rel=1e-7)
    # a plane and a plane turned by theta about a line inside it, in R^4: angles (0, theta)
    P = np.array([[1, 0], [0, 1], [0, 0], [0, 0]], dtype=float)
    R = np.array([[1, 0], [0, np.cos(t)], [0, np.sin(t)], [0, 0]])
    np.testing.assert_allclose(references.principal_angles(P, R), [0.0, theta], rtol=1e-7, atol=1e-7)


def test_principal_angles_match_scipy_and_drop_null_columns():
    A, B = rng(3).normal(size=(10, 4)), rng(4).normal(size=(10, 2))
    expected = np.sort(np.degrees(subspace_angles(A, B)))
    np.testing.assert_allclose(references.principal_angles(A, B), expected, rtol=1e-9)
    np.testing.assert_allclose(references.principal_angles(B, A), expected, rtol=1e-9)
    with_dead = np.hstack([B, np.zeros((10, 1))])  # a collapsed decoder column spans nothing
    np.testing.assert_allclose(references.principal_angles(A, with_dead), expected, rtol=1e-9)
    assert references.principal_angles(A, np.zeros((10, 2))).size == 0
    assert np.isnan(references.largest_principal_angle(A, np.zeros((10, 2))))


# ---- linear VAE / probabilistic PCA ----


def monte_carlo_loss(x, V, b, s2, W, c, sigma, beta, draws, seed=0):
    """The project's per-sample loss averaged over reparameterised draws, and its standard error."""
    m = x @ V.T + b
    d = x.shape[1]
    eps = rng(seed).normal(size=(draws, *m.shape))
    out = (m + np.sqrt(s2) * eps) @ W.T + c
    distortion = 0.5 * (((x - out) / sigma) ** 2).sum(-1) + d * np.log(sigma) + 0.5 * d * np.log(2 * np.pi)
    rate = 0.5 * (m * m + s2 - 1.0 - np.log(s2)).sum(-1)
    per_draw = (distortion + beta * rate).mean(axis=1)
    return per_draw.mean(), per_draw.std(ddof=1) / np.sqrt(draws)


@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_linear_vae_elbo_is_the_expectation_of_the_project_loss(beta):
    r = rng(5)
    x = r.normal(size=(40, 5))
    V, b, W, c = r.normal(size=(3, 5)), r.normal(size=3), r.normal(size=(5, 3)), r.normal(size=5)
    s2 = r.uniform(0.1, 2.0, size=3)
    closed = references.linear_vae_negative_elbo(x, V, b, s2, W, c, sigma=0.7, beta=beta)
    mc, se = monte_carlo_loss(x, V, b, s2, W, c, 0.7, beta, draws=4000)
    assert abs(closed["loss"] - mc) < 5 * se
    assert closed["loss"] == pytest.approx(closed["distortion"] + beta * closed["rate"])
    assert closed["per_sample"].shape == (40,)


def test_ppca_recovers_the_generating_model():
    """x = W0 z + mu + sigma eps: W W' is the covariance minus sigma^2 I in the top subspace."""
    d, k, sigma, n = 6, 2, 0.5, 40000
    W0 = rng(6).normal(size=(d, k)) * 2.0
    x = rng(7).normal(size=(n, k)) @ W0.T + 1.5 + sigma * rng(8).normal(size=(n, d))
    opt = references.ppca_optimum(x, k, sigma)
    assert opt["n_active"] == k
    np.testing.assert_allclose(opt["W"] @ opt["W"].T, W0 @ W0.T, atol=0.05 * np.abs(W0 @ W0.T).max())
    assert references.largest_principal_angle(opt["subspace"], W0) < 1.0
    # exactly, on the sample covariance: P (C - sigma^2 I) P with P the projector on its top-k eigenvectors
    C = np.cov(x.T, bias=True)
    U = np.linalg.eigh(C)[1][:, ::-1][:, :k]
    P = U @ U.T
    np.testing.assert_allclose(opt["W"] @ opt["W"].T, P @ (C - sigma**2 * np.eye(d)) @ P, atol=1e-9)
    np.testing.assert_allclose(opt["mean"], x.mean(axis=0))


def test_ppca_collapses_latents_below_beta_sigma_squared():
    eig = [4.0, 1.5, 0.8, 0.1]
    x = exact_covariance(200, eig, seed=9)
    for beta, active in [(1.0, [True, True, False]), (2.0, [True, False, False]), (5.0, [False, False, False])]:
        opt = references.ppca_optimum(x, 3, sigma=1.0, beta=beta)
        np.testing.assert_array_equal(opt["active"], active)
        norms = np.sqrt(np.sum(opt["W"] ** 2, axis=0))
        np.testing.assert_allclose(norms, np.sqrt(np.clip(np.array(eig[:3]) - beta, 0, None)), atol=1e-9)
        np.testing.assert_allclose(opt["posterior_var"][~opt["active"]], 1.0)
        np.testing.assert_allclose(opt["enc_weight"][~opt["active"]], 0.0)
        assert opt["subspace"].shape == (4, sum(active))
        if sum(active):
            # the encoder mean map reads exactly the directions the decoder writes
            assert references.largest_principal_angle(opt["enc_weight"].T, opt["subspace"]) < 1e-6
            assert references.largest_principal_angle(opt["W"], opt["subspace"]) < 1e-6
    with pytest.raises(ValueError, match="beta"):
        references.ppca_optimum(x, 2, sigma=1.0, beta=0.0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_ppca_elbo_at_beta_one_is_the_marginal_likelihood(split):
    """The diagonal posterior is exact at the optimum (Lucas et al. 2019), so the ELBO is the pPCA likelihood."""
    train, test = anisotropic(300, [3, 2, 1, 0.5, 0.3]), anisotropic(200, [3, 2, 1, 0.5, 0.3], seed=11)
    sigma = 0.6
    data = train if split == "train" else test
    res = references.ppca_negative_elbo(train, data, 3, sigma)
    W, mean = res["optimum"]["W"], res["optimum"]["mean"]
    logpdf = multivariate_normal(mean, W @ W.T + sigma**2 * np.eye(5)).logpdf(data)
    assert res["loss"] == pytest.approx(-logpdf.mean(), rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_the_no_latent_elbo_is_the_likelihood_of_the_train_mean_and_the_fully_collapsed_ppca(beta):
    """The -ELBO of a code that carries nothing: minus the mean log density of N(train mean, sigma^2 I) on the test
    split (scipy), whatever beta (its rate is 0); pPCA with every latent collapsed (beta sigma^2 above lambda_1) is
    that model, and on the train split pPCA with active latents is below it."""
    train, test = anisotropic(300, [3, 2, 1, 0.5, 0.3]), anisotropic(200, [3, 2, 1, 0.5, 0.3], seed=11)
    sigma = 0.6
    nothing = references.no_latent_negative_elbo(train, test, sigma)
    logpdf = multivariate_normal(train.mean(axis=0), sigma**2 * np.eye(5)).logpdf(test)
    assert nothing == pytest.approx(-logpdf.mean(), rel=1e-12)
    collapsed = references.ppca_negative_elbo(train, test, 2, sigma=10.0, beta=beta)
    assert collapsed["optimum"]["n_active"] == 0
    assert references.no_latent_negative_elbo(train, test, 10.0) == pytest.approx(collapsed["loss"], rel=1e-12)
    ppca = references.ppca_negative_elbo(train, train, 2, sigma, beta)
    assert ppca["optimum"]["n_active"] == 2 and ppca["loss"] < references.no_latent_negative_elbo(train, train, sigma)


def pack(V, b, W, c, s2):
    return np.concatenate([V.ravel(), b, W.ravel(), c, np.log(s2)])


def unpack(theta, d, z):
    V = theta[: z * d].reshape(z, d)
    b = theta[z * d : z * d + z]
    W = theta[z * d + z : 2 * z * d + z].reshape(d, z)
    c = theta[2 * z * d + z : 2 * z * d + z + d]
    return V, b, W, c, np.exp(theta[2 * z * d + z + d :])


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_ppca_optimum_is_the_minimum_of_the_linear_vae_loss(beta):
    """Random perturbations only raise the loss, and a numerical optimiser from a random start finds no lower one."""
    d, z, sigma = 4, 2, 0.8
    train = anisotropic(300, [np.sqrt(5), np.sqrt(2), 1.1, 0.5], seed=12)
    res = references.ppca_negative_elbo(train, train, z, sigma, beta)
    opt = res["optimum"]
    assert opt["n_active"] == (2 if beta == 1.0 else 1)

    def loss(theta):
        V, b, W, c, s2 = unpack(theta, d, z)
        return references.linear_vae_negative_elbo(train, V, b, s2, W, c, sigma, beta)["loss"]

    theta0 = pack(opt["enc_weight"], opt["enc_bias"], opt["W"], opt["mean"], opt["posterior_var"])
    assert loss(theta0) == pytest.approx(res["loss"], rel=1e-12)
    r = rng(13)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(20):
            assert loss(theta0 + scale * r.normal(size=theta0.size)) >= res["loss"] - 1e-12
    found = minimize(loss, 0.1 * r.normal(size=theta0.size), method="L-BFGS-B", options={"maxiter": 5000})
    assert found.fun >= res["loss"] - 1e-9
    assert found.fun == pytest.approx(res["loss"], rel=1e-5)


def test_ppca_rejects_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        references.ppca_optimum(rng().normal(size=(10, 3)), 2, sigma=0.0)


# ---- ridge ----


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.5, 20.0])
def test_ridge_matches_scikit_learn(lam, fit_intercept):
    r = rng(14)
    H, Ht = r.normal(size=(120, 6)) + 2.0, r.normal(size=(80, 6)) + 2.0
    B = r.normal(size=(6, 3))
    Y, Yt = H @ B + 1.0 + 0.3 * r.normal(size=(120, 3)), Ht @ B + 1.0 + 0.3 * r.normal(size=(80, 3))
    ref = references.ridge_optimum(H, Y, Ht, Yt, lam=lam, fit_intercept=fit_intercept)
    sk = Ridge(alpha=lam, fit_intercept=fit_intercept, solver="svd").fit(H, Y)
    np.testing.assert_allclose(ref["weights"], sk.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ref["intercept"], np.broadcast_to(sk.intercept_, (3,)), rtol=1e-8, atol=1e-10)
    assert ref["mse_test"] == pytest.approx(np.mean((sk.predict(Ht) - Yt) ** 2), rel=1e-9)
    assert ref["mse_train"] == pytest.approx(np.mean((sk.predict(H) - Y) ** 2), rel=1e-9)


def test_least_squares_with_collinear_features_is_lstsq_minimum_norm():
    r = rng(15)
    H = r.normal(size=(50, 3))
    H = np.hstack([H, H[:, :1], np.zeros((50, 1))])  # a duplicated and a dead feature
    Y = r.normal(size=(50, 2))
    ref = references.ridge_optimum(H, Y, H, Y, lam=0.0, fit_intercept=False)
    expected = np.linalg.lstsq(H, Y, rcond=None)[0]
    np.testing.assert_allclose(ref["weights"], expected, rtol=1e-9, atol=1e-12)
    assert ref["mse_train"] == pytest.approx(np.mean((H @ expected - Y) ** 2), rel=1e-10)
    assert np.all(np.isfinite(ref["weights"]))
