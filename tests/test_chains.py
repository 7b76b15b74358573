"""A user's own autoencoder through the cut interface (nets.chains, nets.user_models): the question's class and a
conv net, profiled as they are, checked against the pipeline's own MLP and torch.func, and every bad input named."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import jacfwd, vmap

import aedissect
from aedissect import cli, config
from aedissect.nets import chains, jacobian, probes, user_models
from aedissect.nets.models import GridAutoencoder

# the class of the question, verbatim but for its syntax, as a user's file
QUESTION_SOURCE = (
    "from torch import nn\n\n\n"
    "class AE(nn.Module):\n"
    "    def __init__(self, x_dim, z_dim):\n"
    "        super().__init__()\n"
    "        self.encoder = nn.Sequential(nn.Linear(x_dim, 42), nn.Linear(42, z_dim))\n"
    "        self.decoder = nn.Sequential(nn.Linear(z_dim, 42), nn.Linear(42, x_dim))\n\n"
    "    def forward(self, x):\n"
    "        return self.decoder(self.encoder(x))\n"
)
FAST = {"probe_size": 60, "max_points": 60, "nonlinear_epochs": 2, "twonn_subsamples": 0}


class QuestionAE(nn.Module):
    """The class the question was asked about (its syntax mended); ``relu`` adds the activation it lacks."""

    def __init__(self, x_dim=64, z_dim=8, relu=False):
        super().__init__()
        act = [nn.ReLU()] if relu else []
        self.encoder = nn.Sequential(nn.Linear(x_dim, 42), *act, nn.Linear(42, z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, 42), *act, nn.Linear(42, x_dim))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ConvAE(nn.Module):
    def __init__(self, z_dim=6, code_conv=False):
        super().__init__()
        head = [nn.Conv2d(8, 4, 3, 1, 1)] if code_conv else [nn.Flatten(), nn.Linear(8 * 4 * 4, z_dim)]
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(), *head)
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, 8 * 4 * 4),
            nn.ReLU(),
            nn.Unflatten(1, (8, 4, 4)),
            nn.ConvTranspose2d(8, 4, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(4, 1, 4, 2, 1),
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


@pytest.fixture
def rows():
    return torch.rand(80, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def images():
    return torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("relu", [False, True])
def test_the_question_s_class_is_cut_after_every_linear_with_the_code_at_the_encoder_s_output(rows, relu):
    torch.manual_seed(0)
    model = QuestionAE(relu=relu)
    wrapped = chains.wrap(model, rows)
    assert wrapped.cut_names() == ["input", "encoder.0", f"encoder.{1 + relu}", "decoder.0", f"decoder.{1 + relu}"]
    assert wrapped.bottleneck_cut == 2 and wrapped.latent_dim == 8
    assert [wrapped.cut_side(c) for c in range(5)] == ["encoder", "encoder", "bottleneck", "decoder", "decoder"]
    with torch.no_grad():
        assert torch.equal(wrapped.forward_to(rows, 2), model.encoder(rows))
        for k in range(5):
            assert torch.equal(wrapped.forward_from(wrapped.forward_to(rows, k), k), model(rows))
    frame = aedissect.profile(model, rows, **FAST)
    assert sorted(frame["cut"].unique()) == [0, 1, 2, 3, 4]
    assert frame.loc[frame["metric"] == "width", "value"].tolist() == [64, 42, 8, 42, 64]
    code_rank = frame[(frame["metric"] == "jacobian_rank") & (frame["cut"] == 2)]["value"].item()
    assert code_rank == 8


def test_a_user_class_and_the_pipeline_s_mlp_with_the_same_weights_have_the_same_profile(rows):
    """An independent path: the adapter over plain nn.Sequential chains against GridAutoencoder's own layers."""
    torch.manual_seed(0)
    mlp = GridAutoencoder(64, [42], 8, [42], activation="relu")
    user = QuestionAE(relu=True)
    mine = [m for m in user.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, layer in zip(mine, mlp.layers, strict=True):
            linear.weight.copy_(layer[0].weight)
            linear.bias.copy_(layer[0].bias)
    ours = aedissect.profile(mlp, rows, **FAST)
    theirs = aedissect.profile(user, rows, **FAST)
    keep = ["cut", "side", "relative_depth", "metric", "value"]
    pd.testing.assert_frame_equal(ours[keep], theirs[keep])


def test_conv_jacobians_are_torch_func_s_and_the_profile_sees_every_cut_flattened(images):
    torch.manual_seed(0)
    model = ConvAE()
    wrapped = chains.wrap(model, images)
    assert wrapped.cut_names() == [
        "input",
        "encoder.0",
        "encoder.2",
        "encoder.5",
        "decoder.0",
        "decoder.3",
        "decoder.5",
    ]
    assert wrapped.bottleneck_cut == 3 and wrapped.latent_dim == 6
    rows = images[:3].flatten(1)  # the wrapped model takes rows and gives rows; the cuts between keep their shapes
    with torch.no_grad():
        assert torch.equal(wrapped(rows), model(images[:3]).flatten(1))
        assert wrapped.all_cuts(rows)[1].shape == (3, 4, 8, 8)
    jacs = jacobian.cut_jacobians(wrapped, rows, chunk_size=2)
    model64 = jacobian._float64_copy(wrapped)
    reference = vmap(jacfwd(lambda p: tuple(h[0].flatten() for h in model64.all_cuts(p[None]))))(rows.double())
    for jac, ref in zip(jacs, reference, strict=True):
        torch.testing.assert_close(jac, ref.reshape(jac.shape), rtol=1e-10, atol=1e-12)
    frame = aedissect.profile(model, images, **FAST)
    widths = frame[frame["metric"] == "width"].set_index("cut")["value"]
    assert widths.tolist() == [256, 256, 128, 6, 128, 256, 256]
    assert frame[(frame["metric"] == "jacobian_rank") & (frame["cut"] == 3)]["value"].item() <= 6


def test_a_wide_feature_map_is_pooled_per_channel_then_projected_the_same_way_for_every_model():
    gen = torch.Generator().manual_seed(0)
    fmap = torch.rand(30, 4, 16, 16, generator=gen)
    pooled = probes.narrowed(fmap, 256, seed=0)  # 4 channels x 8 x 8 = 256
    manual = fmap.double().reshape(30, 4, 8, 2, 8, 2).mean(dim=(3, 5)).reshape(30, -1).numpy()
    np.testing.assert_allclose(pooled, manual, rtol=1e-12)
    assert probes.narrowed(fmap, 4096, seed=0).shape == (30, 1024)  # within the cap: only flattened
    wide = torch.rand(30, 3000, generator=gen)
    a, b = probes.narrowed(wide, 1000, seed=5), probes.narrowed(wide.clone(), 1000, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, probes.narrowed(wide, 1000, seed=6))
    # Johnson-Lindenstrauss: distances kept within a few percent at 1000 dimensions
    d_full = np.linalg.norm(wide[:10, None].numpy() - wide[None, :10].numpy(), axis=-1)
    d_proj = np.linalg.norm(a[:10, None] - a[None, :10], axis=-1)
    off = ~np.eye(10, dtype=bool)
    assert np.abs(d_proj[off] / d_full[off] - 1).max() < 0.15


def test_a_vae_s_code_is_mu_and_its_log_variance_is_read_from_the_second_half(rows):
    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2 * 5))
            self.decoder = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 64))

        def forward(self, x):
            mu, logvar = self.encoder(x).chunk(2, dim=-1)
            return self.decoder(mu + torch.randn_like(mu) * (0.5 * logvar).exp())

    model = VAE()
    wrapped = chains.wrap(model, rows, kind="vae")
    assert wrapped.latent_dim == 5
    mu, logvar = wrapped.posterior(rows)
    stats = model.encoder(rows)
    assert torch.equal(mu, stats[:, :5]) and torch.equal(logvar, stats[:, 5:])
    assert torch.equal(wrapped.forward_to(rows, wrapped.bottleneck_cut), mu)


def test_named_cuts_keep_only_those_and_the_code(rows):
    model = QuestionAE(relu=True)
    wrapped = chains.wrap(model, rows, cuts=["decoder.0"])
    assert wrapped.cut_names() == ["input", "encoder.2", "decoder.0", "decoder.2"]
    with torch.no_grad():
        assert torch.equal(wrapped(rows), model(rows))
    with pytest.raises(chains.ModelError, match="'encoder.1' is not a parametrised module"):
        chains.wrap(model, rows, cuts=["encoder.1"])


def test_every_bad_model_is_one_error_naming_what_is_wrong(rows, images):
    class NoChains(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(64, 64)

        def forward(self, x):
            return self.net(x)

    class Squashed(QuestionAE):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))

    with pytest.raises(chains.ModelError, match="NoChains has no module 'encoder'"):
        chains.wrap(NoChains(), rows)
    with pytest.raises(chains.ModelError, match=r"Squashed.forward\(x\) is not decoder\(encoder\(x\)\)"):
        chains.wrap(Squashed(), rows)
    with pytest.raises(chains.ModelError, match="the code must be a vector"):
        chains.wrap(ConvAE(code_conv=True), images)
    with pytest.raises(chains.ModelError, match=r"rejects inputs of shape \(1, 16, 16\)"):
        chains.wrap(QuestionAE(), images)
    with pytest.raises(chains.ModelError, match="odd"):
        chains.wrap(QuestionAE(z_dim=7), rows, kind="vae")


@pytest.fixture
def question_files(tmp_path, rows):
    source = tmp_path / "question.py"
    source.write_text(QUESTION_SOURCE)
    model = user_models.build(f"{source}:AE", {"x_dim": 64, "z_dim": 8})
    torch.save(model.state_dict(), tmp_path / "state.pt")
    torch.save(model, tmp_path / "pickled.pt")
    return source, tmp_path


def test_cli_profiles_a_state_dict_of_the_user_s_class(question_files, capsys):
    source, folder = question_files
    out = folder / "profile.csv"
    argv = ["profile", str(folder / "state.pt"), "--model", f"{source}:AE", "--kwarg", "x_dim=64", "--kwarg", "z_dim=8"]
    options = [f"--option={key}={value}" for key, value in FAST.items()]
    assert cli.main([*argv, "--data", "digits", "--out", str(out), *options]) == 0
    frame = pd.read_csv(out)
    assert frame["layer"].unique().tolist() == ["input", "encoder.0", "encoder.1", "decoder.0", "decoder.1"]
    assert frame.loc[frame["side"] == "bottleneck", "cut"].unique().tolist() == [2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["state.pt", "--data", "digits"], "state.pt is a state dict: name its class with --model"),
        (["pickled.pt", "--model", "{source}:AE"], "holds a pickled object, not tensors"),
        ([".", "--data", "digits"], "is a folder, not a checkpoint"),
        (["missing.pt"], "model file missing.pt: no such file"),
        (
            ["state.pt", "--model", "{source}:AE", "--kwarg", "x_dim=64", "--kwarg", "z_dim=4", "--data", "digits"],
            r"encoder.1.weight is \(8, 42\) in the file, \(4, 42\) in the class",
        ),
        (["state.pt", "--model", "{source}:Nope", "--data", "digits"], "'Nope' in .* is nothing, not an nn.Module"),
        (["state.pt", "--model", "no_such_module:AE", "--data", "digits"], "cannot import 'no_such_module'"),
        (["state.pt", "--model", "{source}:AE", "--kwarg", "x_dim=64", "--data", "digits"], "missing 1 required"),
    ],
)
def test_cli_names_every_bad_checkpoint_or_class(question_files, capsys, monkeypatch, argv, message):
    source, folder = question_files
    monkeypatch.chdir(folder)
    assert cli.main(["profile", *(a.format(source=source) for a in argv)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_a_bad_cut_width_cap_is_refused_by_its_config_key(rows):
    with pytest.raises(config.ConfigError, match="truncation.max_cut_width"):
        aedissect.profile(QuestionAE(), rows, max_cut_width=3)
