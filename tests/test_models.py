import pytest
import torch

from aedissect.nets.models import GridAutoencoder, build_model

ARCHS = [([16, 8], [8, 16]), ([24, 16, 8], []), ([], [8, 16, 24]), ([], []), ([12], [])]


@pytest.mark.parametrize("encoder,decoder", ARCHS)
@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "linear"])
def test_prefix_then_suffix_is_the_forward_pass(encoder, decoder, kind, activation):
    torch.manual_seed(0)
    model = GridAutoencoder(10, encoder, 4, decoder, activation, kind)
    x = torch.rand(7, 10)
    full = model(x)
    cuts = model.all_cuts(x)
    assert len(cuts) == model.n_layers + 1 == len(encoder) + len(decoder) + 3
    for k in range(model.n_layers + 1):
        h = model.forward_to(x, k)
        assert torch.equal(h, cuts[k])
        assert torch.equal(model.forward_from(h, k), full)
    assert cuts[model.bottleneck_cut].shape == (7, 4)
    assert cuts[-1].shape == x.shape


def test_cut_names_and_sides():
    model = GridAutoencoder(10, [16, 8], 4, [8], "relu", "vae")
    assert model.cut_names() == ["input", "enc1", "enc2", "bottleneck", "dec1", "output"]
    sides = [model.cut_side(c) for c in range(model.n_layers + 1)]
    assert sides == ["encoder", "encoder", "encoder", "bottleneck", "decoder", "decoder"]


def test_vae_bottleneck_cut_is_the_posterior_mean():
    model = GridAutoencoder(10, [16], 3, [16], "tanh", "vae")
    x = torch.rand(5, 10)
    mu, logvar = model.posterior(x)
    assert model.layers[model.bottleneck_layer][0].out_features == 6
    assert torch.equal(model.forward_to(x, model.bottleneck_cut), mu)
    assert torch.equal(model.decode(mu), model(x))
    assert logvar.shape == mu.shape


def test_hidden_layers_use_the_activation_and_code_and_output_stay_linear():
    model = GridAutoencoder(10, [16], 3, [16], "relu", "ae")
    kinds = [type(layer[1]).__name__ for layer in model.layers]
    assert kinds == ["ReLU", "Identity", "ReLU", "Identity"]


def test_freeze_specs():
    model = GridAutoencoder(10, [16, 8], 4, [8, 16], "relu", "ae")  # 6 layers, bottleneck layer index 2
    assert model.frozen_layers("none") == []
    assert model.frozen_layers("encoder") == [0, 1, 2]
    assert model.frozen_layers("decoder") == [3, 4, 5]
    assert model.frozen_layers("prefix-0") == []
    assert model.frozen_layers("prefix-2") == [0, 1]
    assert model.frozen_layers("suffix-2") == [4, 5]
    assert model.frozen_layers("decoder+bias") == [3, 4, 5]
    for bad in ["prefix-7", "middle", "prefix-", "encoder;rm", "decoder+", "decoder+bias+bias"]:
        with pytest.raises(ValueError, match="freeze spec"):
            model.frozen_layers(bad)


def test_frozen_parameters_are_those_of_the_frozen_layers_less_the_output_bias_with_plus_bias():
    model = GridAutoencoder(10, [16, 8], 4, [8, 16], "relu", "ae")
    layer_params = {i: [f"layers.{i}.0.weight", f"layers.{i}.0.bias"] for i in range(model.n_layers)}
    assert model.frozen_parameters("none") == model.frozen_parameters("none+bias") == []
    assert model.frozen_parameters("suffix-2") == layer_params[4] + layer_params[5]
    assert model.frozen_parameters("suffix-2+bias") == layer_params[4] + ["layers.5.0.weight"]
    # the suffix does not reach the output layer's bias where the spec does not freeze the output layer
    assert model.frozen_parameters("prefix-2+bias") == model.frozen_parameters("prefix-2")
    names = dict(model.named_parameters())
    assert all(name in names for name in model.frozen_parameters("decoder"))


def test_initial_weights_depend_only_on_the_seed():
    run = {"seed": 3, "encoder": [8], "decoder": [8], "bottleneck": 2, "activation": "relu", "kind": "ae"}
    a, b = build_model(run, 6), build_model(run, 6)
    torch.rand(100)  # the global generator's state must not matter
    c = build_model(run, 6)
    for (ka, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True):
        assert torch.equal(va, vb) and torch.equal(va, vc), ka
    other = build_model(run | {"seed": 4}, 6)
    assert not torch.equal(a.layers[0][0].weight, other.layers[0][0].weight)


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="activation"):
        GridAutoencoder(4, [], 2, [], "swish", "ae")
    with pytest.raises(ValueError, match="kind"):
        GridAutoencoder(4, [], 2, [], "relu", "gan")
    with pytest.raises(IndexError):
        GridAutoencoder(4, [], 2, [], "relu", "ae").forward_to(torch.zeros(1, 4), 3)


@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("code_map", [False, True])
def test_stacked_weights_run_every_member_through_the_one_module(kind, code_map):
    """The ensemble runs its members' stacked weights through one module (models.Linear takes (M, out, in)
    weights): every member's output and loss equal its own model's, on its own rows or on rows all share."""
    import copy

    from torch.func import functional_call, stack_module_state

    from aedissect.nets import training
    from aedissect.nets.ensemble import _Loss

    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(GridAutoencoder(10, [8, 6], 3, [6], "tanh", kind, code_map=code_map))
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    run = {"vae": {"likelihood": "gaussian", "sigma": 0.3, "beta": 1.0}}
    loss = _Loss(base, run)
    prefixed = {f"model.{k}": v for k, v in {**params, **buffers}.items()}
    gen = torch.Generator().manual_seed(0)
    own, shared = torch.rand(3, 7, 10, generator=gen), torch.rand(7, 10, generator=gen)
    eps = torch.randn(3, 7, 3, generator=gen) if kind == "vae" else None
    for x in (own, shared):
        out = functional_call(base, (params, buffers), (x,))
        losses = functional_call(loss, prefixed, (x, eps, 0.5))
        assert out.shape == (3, 7, 10) and losses.shape == (3,)
        for m, model in enumerate(members):
            xm = x[m] if x.dim() == 3 else x
            torch.testing.assert_close(out[m], model(xm), atol=1e-6, rtol=1e-5)
            alone = training.loss_terms(model, xm, run, None, None if eps is None else eps[m], 0.5)["loss"]
            torch.testing.assert_close(losses[m], alone, atol=1e-5, rtol=1e-5)
