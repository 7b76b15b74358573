"""Conv families in the grid: architecture entries with convolutions, the model they build, and every experiment's
code path through them (the Jacobian, the reparametrised twin, stitches, closed forms), checked against independent
computations; the workflow's profile of a trained conv net equals ``aedissect.profile`` of its model.pt and of the
same weights in a user's own class."""

import copy

import pandas as pd
import pytest
import torch
from torch import nn

import aedissect
from aedissect import architectures, config, datasets, plans
from aedissect.nets import data, interventions, jacobian, jobs, probes, reparam, training
from aedissect.nets.models import build_model, initial_models
from conftest import CONV_CONFIG, TINY_CONFIG, load_yaml

CONV = {"conv": 4, "kernel": 4, "stride": 2}
DECONV = {"deconv": 4, "kernel": 4, "stride": 2}
FAST = {"probe_size": 60, "max_points": 60, "nonlinear_epochs": 2, "twonn_subsamples": 0}


def conv_study(**architectures_) -> dict:
    study = load_yaml(TINY_CONFIG)
    study["datasets"] = ["shapes"]
    study["data"] = {"shapes": {"size": 16, "n_samples": 300, "antialias": False, "seed": 0}}
    study["architectures"] = architectures_ or {
        "conv": {"family": "conv-symmetric", "encoder": [CONV, {**CONV, "conv": 8}, 16], "decoder": [16, 32, DECONV]},
        "conv-mlp": {"family": "conv-encoder", "encoder": [CONV, 16], "decoder": [16]},
        "mlp-deconv": {"family": "conv-decoder", "encoder": [32], "decoder": [32, DECONV]},
    }
    study["interventions"]["freeze"]["k"] = {}
    study["bottlenecks"] = [3]
    study["interventions"]["cells"] = {}
    return config.validate(study)


@pytest.fixture(scope="module")
def study():
    return conv_study()


@pytest.fixture(scope="module")
def shapes_data(study):
    return data.build("shapes", study["data"])


def run_of(study, arch="conv", kind="ae", seed=0):
    return config.resolve_run(study, "shapes", kind, arch, 3, "relu", seed)


def test_disentanglement_lib_s_conv_net_at_32_x_32_has_the_shapes_of_its_paper():
    """Burgess et al. / disentanglement_lib's encoder (4 convs 4x4 stride 2, 32-32-64-64, dense 256) and its
    transpose, at 32 x 32: each conv halves the grid, the last dense decoder layer is the 64 x 2 x 2 map."""
    conv = [{"conv": c, "kernel": 4, "stride": 2} for c in (32, 32, 64, 64)]
    deconv = [{"deconv": c, "kernel": 4, "stride": 2} for c in (64, 32, 32)]
    shapes = architectures.cut_shapes([*conv, 256], 10, [256, 256, *deconv], (1, 32, 32), "architectures.conv")
    assert shapes == [
        (1, 32, 32), (32, 16, 16), (32, 8, 8), (64, 4, 4), (64, 2, 2), (256,), (10,),
        (256,), (64, 2, 2), (64, 4, 4), (32, 8, 8), (32, 16, 16), (1, 32, 32),
    ]  # fmt: skip
    macs = architectures.layer_macs([*conv, 256], [256, 256, *deconv], shapes)
    assert macs[0] == 16 * 16 * 32 * 1 * 16 and macs[-1] == 16 * 16 * 32 * 1 * 16  # the transpose's first = last
    assert architectures.labels([*conv, 256]) == "c32k4s2-c32k4s2-c64k4s2-c64k4s2-256"


@pytest.mark.parametrize(
    "encoder,decoder,message",
    [
        ([16, CONV], [16], r"encoder\[1\]: a convolution needs an image"),
        ([CONV], [DECONV], "need dense layers before them"),
        ([CONV], [17, DECONV], r"decoder\[0\]: a dense layer of width 17 cannot be unflattened to a 4x4 map"),
        ([{"conv": 4, "kernel": 40, "stride": 2, "padding": 0}], [16], "gives none"),
    ],
)
def test_a_layer_that_does_not_fit_is_refused_naming_its_key(encoder, decoder, message):
    with pytest.raises(config.ConfigError, match=r"architectures\.bad\.") as err:
        conv_study(bad={"family": "conv-symmetric", "encoder": encoder, "decoder": decoder})
    assert err.match(message)


def test_a_conv_architecture_on_data_without_images_is_refused_naming_both():
    study = load_yaml(TINY_CONFIG)
    study["architectures"]["c"] = {"family": "conv-encoder", "encoder": [CONV, 16], "decoder": [16]}
    with pytest.raises(config.ConfigError, match="architectures.c has convolutions, and data set factors has no"):
        config.validate(study)


def test_only_conv_runs_carry_an_input_shape_so_dense_runs_keep_their_hashes(study):
    tiny = config.validate(load_yaml(TINY_CONFIG))
    assert all("input_shape" not in run for run in config.grid(tiny))
    assert run_of(study)["input_shape"] == [1, 16, 16]
    assert config.config_columns(run_of(study))["encoder"] == "c4k4s2-c8k4s2-16"


@pytest.mark.parametrize("arch", ["conv", "conv-mlp", "mlp-deconv"])
def test_the_grid_s_conv_net_is_the_same_function_as_the_torch_modules_it_names(study, shapes_data, arch):
    """Its layers rebuilt independently as one nn.Sequential of torch modules on images, with its weights: the same
    reconstruction; and every cut is a prefix (forward_from(forward_to(x, k), k) is the output)."""
    model = build_model(run_of(study, arch), 256)
    head = [nn.Unflatten(1, (1, 16, 16))] if model.input_shape is not None else []
    reference = nn.Sequential(*head, *[m for layer in model.layers for m in layer])
    x = shapes_data["x_test"][:20]
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, reference(x))
        for k in range(model.n_layers + 1):
            assert torch.equal(model.forward_from(model.forward_to(x, k), k), out), k
    assert out.shape == x.shape


def test_centred_init_centres_every_conv_channel_and_the_output_on_the_data(study, shapes_data):
    x = shapes_data["x_train"]
    run = run_of(study) | {"training": run_of(study)["training"] | {"init": "centred"}}
    model = initial_models([run], x)[0]
    h = x.reshape(-1, 1, 16, 16)
    with torch.no_grad():
        for i, layer in enumerate(model.layers[:-1]):
            pre = layer[0](h)
            means = pre.mean((0, 2, 3)) if pre.dim() == 4 else pre.mean(0)
            assert means.abs().max() < 1e-5, i
            h = layer[1:](pre)
        assert abs(float(model(x).mean() - x.mean())) < 1e-6


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_conv_jacobians_are_jacfwd_s(study, kind):
    model = initial_models([run_of(study, kind=kind)], torch.rand(50, 256))[0]
    x = torch.rand(3, 256, dtype=torch.float64)
    model64 = copy.deepcopy(model).double()
    for c, jac in enumerate(jacobian.cut_jacobians(model, x)):
        for k in range(x.shape[0]):
            expected = torch.func.jacfwd(lambda v, c=c: model64.forward_to(v[None], c).flatten())(x[k])
            torch.testing.assert_close(jac[k], expected, rtol=0, atol=1e-12)


def test_the_reparametrised_conv_twin_scales_each_channel_and_keeps_the_function(study, shapes_data):
    model = initial_models([run_of(study)], shapes_data["x_train"])[0]
    x = shapes_data["x_test"][:50]
    twin, info = reparam.reparametrize(model, seed=3, x=x)
    assert info["function_gap"] < 1e-5 and not info["skipped"]
    with torch.no_grad():
        cuts, twin_cuts = model.all_cuts(x), twin.all_cuts(x)
    for cut, scale in info["unit_scales"].items():
        shape = model.cut_shapes[cut]
        factor = torch.as_tensor(scale, dtype=torch.float32)
        expected = cuts[cut].reshape(-1, *shape) * factor.reshape(-1, *[1] * (len(shape) - 1))
        torch.testing.assert_close(twin_cuts[cut].reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_a_conv_net_stitched_to_itself_through_1x1_convolutions(study, shapes_data):
    """At a feature-map cut the stitch is a 1 x 1 convolution: the identity gives the net's own reconstruction
    exactly, the least-squares start reproduces it; at the dense cuts a Linear, as for the MLPs."""
    run = run_of(study)
    model = initial_models([run], shapes_data["x_train"])[0]
    x = shapes_data["x_test"]
    with torch.no_grad():
        own = model(x)
    kinds = {}
    for cut in range(1, model.n_layers):
        shape = interventions.cut_shape(model, cut, x)
        identity = interventions.identity_stitch(shape, shape)
        kinds[cut] = type(identity).__name__
        with torch.no_grad():
            assert torch.equal(interventions.Stitched(model, model, identity, run, cut, cut)(x), own), cut
            start = interventions.least_squares_stitch(model, model, shapes_data["x_train"], cut, cut)
            fitted = interventions.Stitched(model, model, start, run, cut, cut)(x)
        torch.testing.assert_close(fitted, own, rtol=1e-4, atol=1e-4)
    assert kinds == {1: "Conv2d", 2: "Linear", 3: "Linear", 4: "Linear", 5: "Linear", 6: "Conv2d", 7: "Conv2d"}


def test_no_closed_form_is_claimed_for_a_conv_net(study, shapes_data):
    model = initial_models([run_of(study)], shapes_data["x_train"])[0]
    optimum = interventions.closed_form_optimum(model, "prefix-4", shapes_data["x_train"], shapes_data["x_test"])
    assert optimum["optimum_reason"].startswith("a convolution")


class UsersConvAE(nn.Module):
    """The grid's conv net as a user would write it: images in, images out."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(128, 16), nn.ReLU(), nn.Linear(16, 3),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Unflatten(1, (2, 4, 4)),
            nn.ConvTranspose2d(2, 4, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(4, 1, 4, 2, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.decoder(self.encoder(x))


@pytest.fixture(scope="module")
def trained_conv(study, shapes_data, tmp_path_factory):
    """A conv run trained and saved by the train job's code (two epochs), as the workflow writes its model.pt."""
    run = run_of(study)
    run["training"] = run["training"] | {"epochs": 2}
    result = training.train(run, shapes_data, training.setup_torch(1, "cpu"))
    run_dir = tmp_path_factory.mktemp("conv")
    jobs.save_run(run, result, shapes_data, run_dir, 2, {})
    return run, run_dir / "model.pt"


def test_the_workflow_s_profile_of_a_conv_net_is_aedissect_profile_s_of_its_file_and_of_a_user_s_class(
    trained_conv, shapes_data
):
    run, path = trained_conv
    tensors = shapes_data
    options = config.section("truncation", FAST)
    expected, _ = probes.profile_cell([{"run_id": "m", "seed": 0}], [str(path)], tensors, options)
    trained = expected["m"][expected["m"]["state"] == "trained"].reset_index(drop=True)
    split = {"x_fit": tensors["x_train"], "y_fit": tensors["y_train"], "name": "m", **FAST}
    split |= {"factors": tensors["factors_test"], "factors_fit": tensors["factors_train"]}
    from_file = aedissect.profile(path, tensors["x_test"], tensors["y_test"], **split)
    pd.testing.assert_frame_equal(from_file, trained)
    # the same weights in the user's class, which takes images: its modules in the grid model's order
    model, _ = aedissect.load_model(str(path))
    users = UsersConvAE()
    grid_modules = [m for layer in model.layers for m in layer if next(m.parameters(), None) is not None]
    users_modules = [m for m in users.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]
    for mine, theirs in zip(grid_modules, users_modules, strict=True):
        theirs.load_state_dict(mine.state_dict())
    images = {key: tensors[key].reshape(-1, 1, 16, 16) for key in ("x_test", "x_train")}
    from_class = aedissect.profile(users, images["x_test"], tensors["y_test"], **(split | {"x_fit": images["x_train"]}))
    pd.testing.assert_frame_equal(from_class.drop(columns="layer"), trained.drop(columns="layer"))


def test_the_conv_study_s_layer_profiles_are_aedissect_profile_s_of_each_model_pt(conv_study):
    """The done-when of issue 26 as a user meets it: a conv family trained and truncated by the workflow, then its
    model.pt profiled by the front door with the study's truncation options, gives the rows of layer_profile.csv."""
    study = config.validate(load_yaml(CONV_CONFIG))
    tensors = data.load(str(conv_study / "results/data/shapes.pt"))
    options = plans.truncation_options(study)
    for arch in ("conv", "mlp-deconv"):
        run_dir = conv_study / "results/runs/shapes/vae" / arch / "z3/relu/s1"
        expected = pd.read_csv(run_dir / "layer_profile.csv")
        # the job also compares the cell's seeds (CKA across seeds): a profile of one model has no other seed
        expected = expected[(expected["state"] == "trained") & ~expected["metric"].str.startswith("cka_seeds")]
        expected = expected.reset_index(drop=True)
        got = aedissect.profile(
            run_dir / "model.pt",
            tensors["x_test"],
            tensors["y_test"],
            x_fit=tensors["x_train"],
            y_fit=tensors["y_train"],
            factors=tensors["factors_test"],
            factors_fit=tensors["factors_train"],
            factor_columns=datasets.factor_columns("shapes", study["data"]),
            name=expected["run_id"][0],
            **options,
        )
        # to rounding: the job limits BLAS to its one thread, this process does not
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


def test_the_conv_study_stitches_feature_maps_and_reads_its_conv_families(conv_study):
    stitching = pd.read_csv(conv_study / "results/tables/stitching.csv")
    conv = stitching[stitching["run_id_b"].str.contains("/conv/")]
    assert set(conv["cut_b"]) == set(range(1, 8)), "every hidden cut of the conv net, its feature maps included"
    self_identity = conv[(conv["pair_type"] == "self") & (conv["stitch"] == "identity")]
    assert (self_identity["penalty"] == 0).all()
    seed_pairs = conv[conv["pair_type"] == "seed"]
    assert {"trained", "init_a"} <= set(seed_pairs["stitch"]) and seed_pairs["test_mse"].notna().all()
    findings = (conv_study / "results/paper/findings.md").read_text()
    assert "**conv-symmetric**" in findings and "**conv-decoder**" in findings
    runs = pd.read_csv(conv_study / "results/tables/runs.csv")
    assert set(runs.loc[runs["arch"] == "conv", "encoder"]) == {"c4k4s2-c8k4s2-16"}
