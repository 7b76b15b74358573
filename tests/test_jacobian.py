"""jacobian: Jacobians of every cut, their rank and participation ratio, against independent computations
(closed forms of a linear net built from known singular values, central finite differences, numpy's SVD)."""

import copy
import math

import numpy as np
import pytest
import torch

from aedissect.nets.jacobian import cut_jacobians, jacobian_rank_profile, reduction_shares
from aedissect.nets.models import GridAutoencoder
from aedissect.nets.reparam import reparametrize

# the linear net: widths 6 -> 5 -> 3 (code) -> 4 -> 6, layer l = Q_{l+1} diag(S[l]) Q_l^T with orthogonal Q,
# so the prefix up to cut c has the elementwise products of S[0..c-1] (truncated) as singular values
WIDTHS = [6, 5, 3, 4, 6]
S = [[3.0, 2.0, 1.0, 0.5, 0.0], [2.0, 1.0, 0.0], [1.5, 1.0, 0.5], [1.0, 2.0, 3.0, 4.0]]
RANKS = [6, 4, 2, 2, 2]


def orthogonal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def linear_net(kind):
    rng = np.random.default_rng(0)
    model = GridAutoencoder(WIDTHS[0], [WIDTHS[1]], WIDTHS[2], [WIDTHS[3]], "linear", kind).double()
    q = [orthogonal(w, rng) for w in WIDTHS]
    with torch.no_grad():
        for l, s in enumerate(S):
            d = np.zeros((WIDTHS[l + 1], WIDTHS[l]))
            d[np.arange(len(s)), np.arange(len(s))] = s
            lin = model.layers[l][0]
            # the VAE's log-variance rows and every bias stay random: neither enters dh_c/dx
            lin.weight[: WIDTHS[l + 1]] = torch.from_numpy(q[l + 1] @ d @ q[l].T)
    return model


def prefix_singular_values(c):
    if c == 0:
        return np.ones(WIDTHS[0])
    n = min(len(s) for s in S[:c])
    return np.prod([np.asarray(s[:n]) for s in S[:c]], axis=0)


def closed_form_pr(s):
    s2 = np.asarray(s) ** 2
    return s2.sum() ** 2 / (s2**2).sum()


def relu_net(kind="ae", seed=0):
    torch.manual_seed(seed)
    return GridAutoencoder(12, [16, 10, 6], 3, [6, 10], "relu", kind)


def points(n, dim, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def numpy_rank_and_pr(jac, rel_threshold):
    s = np.linalg.svd(jac, compute_uv=False)
    rank = (s > rel_threshold * s.max(axis=1, keepdims=True)).sum(axis=1)
    pr = (s**2).sum(axis=1) ** 2 / (s**4).sum(axis=1)
    return rank, pr


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_linear_net_rank_and_pr_are_the_closed_forms(kind):
    model = linear_net(kind)
    profile = jacobian_rank_profile(model, points(40, WIDTHS[0]))
    assert [p["cut"] for p in profile] == list(range(len(WIDTHS)))
    assert [p["width"] for p in profile] == WIDTHS
    assert [p["rank_mean"] for p in profile] == RANKS
    for p in profile:
        assert p["rank_std"] == 0 and p["n_zero"] == 0 and p["n_points"] == 40
        assert p["pr_mean"] == pytest.approx(closed_form_pr(prefix_singular_values(p["cut"])), rel=1e-9)
        assert p["pr_std"] < 1e-9
    shares = reduction_shares(profile)
    assert [(r["layer"], r["rank_drop"], r["share"]) for r in shares] == [("enc1", 2, 0.5), ("bottleneck", 2, 0.5)]
    assert all(r["reason"] == "" for r in shares)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_jacobians_equal_central_finite_differences(activation, kind):
    torch.manual_seed(0)
    model = GridAutoencoder(12, [16, 10], 3, [10], activation, kind)
    x = points(5, 12)
    jacobians = cut_jacobians(model, x, chunk_size=2)
    model64 = copy.deepcopy(model).double()
    h = 1e-6
    with torch.no_grad():
        for i in range(x.shape[1]):
            e = torch.zeros(12, dtype=torch.float64)
            e[i] = h
            plus, minus = model64.all_cuts(x + e), model64.all_cuts(x - e)
            for c, jac in enumerate(jacobians):
                fd = (plus[c] - minus[c]) / (2 * h)
                torch.testing.assert_close(jac[:, :, i], fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "linear"])
@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_chain_rule_jacobians_equal_torch_func_jacfwd(activation, kind):
    from torch.func import jacfwd, vmap

    torch.manual_seed(1)
    model = GridAutoencoder(12, [16, 10], 3, [10, 8], activation, kind)
    x = points(9, 12)
    model64 = copy.deepcopy(model).double().eval()
    reference = vmap(jacfwd(lambda p: tuple(h[0] for h in model64.all_cuts(p[None]))))(x)
    for jac, ref in zip(cut_jacobians(model, x, chunk_size=4), reference, strict=True):
        torch.testing.assert_close(jac, ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_the_decoders_cuts_in_the_codes_basis_keep_the_full_jacobians_singular_values(kind):
    """jacobian_rank_profile computes the cuts after the code as J_c Q (Q a basis of the code Jacobian's rows):
    the same ranks and participation ratios as the full (width x in_dim) Jacobians, here wider than the input."""
    torch.manual_seed(3)
    model = GridAutoencoder(20, [12], 4, [40, 32], "tanh", kind)
    x = points(25, 20)
    full = cut_jacobians(model, x)
    profile = jacobian_rank_profile(model, x, rel_threshold=1e-6, chunk_size=10)
    assert [p["width"] for p in profile] == [20, 12, 4, 40, 32, 20]
    for c, (jac, p) in enumerate(zip(full, profile, strict=True)):
        rank, pr = numpy_rank_and_pr(jac.numpy(), 1e-6)
        assert p["rank_mean"] == rank.mean() and p["rank_std"] == pytest.approx(rank.std(), abs=1e-12), c
        assert p["pr_mean"] == pytest.approx(pr.mean(), rel=1e-9) and p["pr_std"] == pytest.approx(pr.std(), abs=1e-9)
    assert [p["rank_mean"] for p in profile[2:]] == [4.0] * 4  # tanh: full rank up to the code's


def test_relu_rank_never_increases_and_matches_numpy():
    model = relu_net()
    x = points(100, 12)
    jacobians = cut_jacobians(model, x)
    profile = jacobian_rank_profile(model, x, chunk_size=33)
    ranks = []
    for jac, p in zip(jacobians, profile, strict=True):
        rank, pr = numpy_rank_and_pr(jac.numpy(), 1e-3)
        ranks.append(rank)
        # dead points have a zero Jacobian: rank 0 and, by the module's convention, participation ratio 0
        pr = np.where(rank == 0, 0.0, pr)
        assert p["rank_mean"] == pytest.approx(rank.mean()) and p["rank_std"] == pytest.approx(rank.std())
        assert p["pr_mean"] == pytest.approx(pr.mean(), rel=1e-9) and p["pr_std"] == pytest.approx(pr.std(), rel=1e-6)
        assert p["n_zero"] == int((rank == 0).sum())
    ranks = np.stack(ranks)
    code = model.bottleneck_cut
    assert (np.diff(ranks[: code + 1], axis=0) <= 0).all()
    assert (ranks[code:] <= ranks[code]).all()
    # the net is not degenerate: the ReLUs cut rank below the widths somewhere
    assert ranks[1].mean() < 12 and ranks[code].mean() > 0


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_rank_is_invariant_under_reparametrize_but_pr_is_not(activation, kind):
    torch.manual_seed(0)
    model = GridAutoencoder(12, [16, 10, 6], 3, [6, 10], activation, kind)
    x = points(100, 12)
    twin, _ = reparametrize(model, seed=3)
    # a threshold far below any genuine singular value: the exact rank, which D J and M J share with J
    old = jacobian_rank_profile(model, x, rel_threshold=1e-6)
    new = jacobian_rank_profile(twin, x, rel_threshold=1e-6)
    assert [p["rank_mean"] for p in new] == [p["rank_mean"] for p in old]
    assert [p["rank_std"] for p in new] == [p["rank_std"] for p in old]
    assert [r["share"] for r in reduction_shares(new)] == [r["share"] for r in reduction_shares(old)]
    code = model.bottleneck_cut
    if kind == "ae":  # an AE's code is mixed by a map of condition 10; a VAE's only permuted, with signs
        assert abs(new[code]["pr_mean"] - old[code]["pr_mean"]) > 0.05
    else:
        assert new[code]["pr_mean"] == pytest.approx(old[code]["pr_mean"], rel=1e-6)
    # the input and output cuts are the same function of x, so their spectra are the same
    for c in (0, model.n_layers):
        assert new[c]["pr_mean"] == pytest.approx(old[c]["pr_mean"], rel=1e-4)


def test_zero_jacobian_has_rank_and_pr_zero():
    model = relu_net()
    with torch.no_grad():
        model.layers[0][0].weight.zero_()
        model.layers[0][0].bias.fill_(-1.0)
    profile = jacobian_rank_profile(model, points(20, 12))
    assert profile[0]["rank_mean"] == 12
    for p in profile[1:]:
        assert (p["rank_mean"], p["pr_mean"], p["n_zero"]) == (0, 0, 20)


def test_shares_are_nan_with_a_reason_without_reduction():
    # a code wider than the input keeps every input direction: nothing to share out
    torch.manual_seed(0)
    model = GridAutoencoder(3, [], 5, [4], "relu", "ae")
    shares = reduction_shares(jacobian_rank_profile(model, points(10, 3)))
    assert [r["layer"] for r in shares] == ["bottleneck"]
    assert math.isnan(shares[0]["share"]) and "no reduction" in shares[0]["reason"]


def test_shares_sum_to_one():
    shares = reduction_shares(jacobian_rank_profile(relu_net("vae"), points(60, 12)))
    assert [r["layer"] for r in shares] == ["enc1", "enc2", "enc3", "bottleneck"]
    assert sum(r["share"] for r in shares) == pytest.approx(1.0)


def test_chunking_does_not_change_the_profile():
    model, x = relu_net(), points(50, 12)
    a = jacobian_rank_profile(model, x, chunk_size=7)
    b = jacobian_rank_profile(model, x)
    for pa, pb in zip(a, b, strict=True):
        assert (pa["cut"], pa["width"], pa["n_points"], pa["n_zero"]) == (
            pb["cut"],
            pb["width"],
            pb["n_points"],
            pb["n_zero"],
        )
        for key in ("rank_mean", "rank_std", "pr_mean", "pr_std"):
            assert pa[key] == pytest.approx(pb[key], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 1e-9, 1.0])
def test_rejects_thresholds_the_eigenvalues_cannot_resolve(threshold):
    with pytest.raises(ValueError):
        jacobian_rank_profile(relu_net(), points(3, 12), rel_threshold=threshold)
