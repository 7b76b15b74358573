"""reparam.reparametrize: the twin computes the same function with other weights, as the docstring says.

Every check is against a direct computation (forward passes of both models, numpy's SVD of M), not against
what ``info`` reports about itself.
"""

import numpy as np
import pytest
import torch
from torch import nn

from aedissect.nets import probes
from aedissect.nets.models import GridAutoencoder
from aedissect.nets.probes import cut_activations
from aedissect.nets.reparam import function_gap, reparametrize

ARCHS = [([16, 8], [8, 16]), ([], [8, 16]), ([16, 8], []), ([], [])]
IN_DIM, CODE = 10, 4


def make(encoder, decoder, activation, kind, seed=0):
    torch.manual_seed(seed)
    return GridAutoencoder(IN_DIM, encoder, CODE, decoder, activation, kind)


def inputs(n=200, seed=1):
    return torch.randn(n, IN_DIM, generator=torch.Generator().manual_seed(seed))


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).detach())


@pytest.mark.parametrize("encoder,decoder", ARCHS)
@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_same_function_other_weights(encoder, decoder, activation, kind):
    model = make(encoder, decoder, activation, kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = inputs()
    new, info = reparametrize(model, seed=5, x=x)

    with torch.no_grad():
        gap = float((model(x) - new(x)).abs().max())
    assert gap < 1e-5
    assert info["function_gap"] == pytest.approx(gap, abs=1e-12)
    assert info["skipped"] == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"the original's {k} changed"
    for old, twin in zip(model.layers, new.layers, strict=True):
        assert relative_change(twin[0].weight, old[0].weight) > 0.1

    # each hidden cut is the original one with its units rescaled, the code the original mixed by M
    old_cuts, new_cuts = model.all_cuts(x), new.all_cuts(x)
    hidden = [c for c in range(1, model.n_layers) if c != model.bottleneck_cut]
    assert sorted(info["unit_scales"]) == hidden
    for c in hidden:
        a = torch.from_numpy(info["unit_scales"][c]).float()
        assert ((a >= 0.25) & (a <= 4.0)).all()
        torch.testing.assert_close(new_cuts[c], old_cuts[c] * a, atol=1e-5, rtol=1e-5)
    m = torch.from_numpy(info["code_matrix"]).float()
    c = model.bottleneck_cut
    torch.testing.assert_close(new_cuts[c], old_cuts[c] @ m.T, atol=1e-5, rtol=1e-5)
    if kind == "vae":  # a signed permutation of the latents, log variances permuted alike: the same VAE
        order = m.abs().argmax(dim=1)
        assert torch.equal(m.abs().sum(dim=1), torch.ones(CODE)) and sorted(order.tolist()) == list(range(CODE))
        torch.testing.assert_close(new.posterior(x)[1], model.posterior(x)[1][:, order], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            probes.posterior_scale(new, x), probes.posterior_scale(model, x)[order], atol=1e-6, rtol=1e-6
        )


@pytest.mark.parametrize("condition", [1.0, 3.0, 10.0, 100.0])
def test_code_matrix_has_the_requested_condition_number(condition):
    model = make([16], [16], "relu", "ae")
    _, info = reparametrize(model, seed=2, code_condition=condition)
    s = np.linalg.svd(info["code_matrix"], compute_uv=False)
    assert s.shape == (CODE,)
    assert s.max() / s.min() == pytest.approx(condition, rel=1e-9)
    assert info["condition_number"] == pytest.approx(condition, rel=1e-9)
    # not merely a diagonal scaling: the code directions are mixed
    m = info["code_matrix"]
    assert np.abs(m - np.diag(np.diag(m))).max() > 1e-2


def test_deterministic_per_seed_and_leaves_the_global_rng_alone():
    model = make([16, 8], [8, 16], "relu", "vae")
    rng = torch.random.get_rng_state()
    a, _ = reparametrize(model, seed=3)
    b, _ = reparametrize(model, seed=3)
    c, _ = reparametrize(model, seed=4)
    assert torch.equal(torch.random.get_rng_state(), rng)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(not torch.equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_saturating_activations_skip_unit_scaling_but_mix_the_code(activation, kind):
    model = make([16, 8], [8, 16], activation, kind)
    b = model.bottleneck_layer
    # the code matrix is legitimate whatever the activation only because the code layer is linear
    assert isinstance(model.layers[b][1], nn.Identity)
    x = inputs()
    new, info = reparametrize(model, seed=6, x=x)
    with torch.no_grad():
        assert float((model(x) - new(x)).abs().max()) < 1e-5
    hidden = [c for c in range(1, model.n_layers) if c != model.bottleneck_cut]
    assert info["unit_scales"] == {}
    assert sorted(info["skipped"]) == hidden
    assert all("does not commute" in reason for reason in info["skipped"].values())
    for i, (old, twin) in enumerate(zip(model.layers, new.layers, strict=True)):
        if i in (b, b + 1):
            assert relative_change(twin[0].weight, old[0].weight) > 0.1
        else:
            assert torch.equal(twin[0].weight, old[0].weight) and torch.equal(twin[0].bias, old[0].bias)


def test_twin_goes_through_truncation_unchanged():
    model = make([16, 8], [8], "relu", "vae")
    model.train()
    new, _ = reparametrize(model, seed=7)
    assert new.training
    for attr in ("kind", "latent_dim", "bottleneck_layer", "bottleneck_cut", "layer_names", "n_layers"):
        assert getattr(new, attr) == getattr(model, attr)
    assert all(p.requires_grad for p in new.parameters())
    x = inputs(50)
    old_acts, new_acts = cut_activations(model, x), cut_activations(new, x)
    assert [h.shape for h in new_acts] == [h.shape for h in old_acts]
    np.testing.assert_allclose(new_acts[-1], old_acts[-1], atol=1e-5)
    assert function_gap(model, new, x) < 1e-5


def test_function_gap_sees_a_different_function():
    a, b = make([16], [16], "relu", "ae", seed=0), make([16], [16], "relu", "ae", seed=1)
    x = inputs(30)
    with torch.no_grad():
        expected = float((a(x) - b(x)).abs().max())
    assert function_gap(a, b, x) == pytest.approx(expected) and expected > 1e-2


@pytest.mark.parametrize("kwargs", [{"scale_range": (0.0, 4.0)}, {"scale_range": (4.0, 0.25)}, {"code_condition": 0.5}])
def test_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        reparametrize(make([8], [8], "relu", "ae"), seed=0, **kwargs)
