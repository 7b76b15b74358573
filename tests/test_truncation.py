"""aedissect.nets.probes: activations from one pass, the per-run layer profile, probes, CKA matrices, loci, the
Jacobian metrics, the profile at init and the reparametrisation check."""

import ast
import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aedissect import config as study
from aedissect import datasets, metrics
from aedissect.analysis import truncation_tables
from aedissect.nets import jacobian, probes, reparam
from aedissect.nets.models import build_model
from conftest import REPO

OPTIONS = {
    "seed": 0,
    "probe_size": 150,
    "max_points": 120,
    "ridge_lambdas": [1e-6, 1e-3, 1e-1],
    "probe_C": 1.0,
    "probe_max_iter": 50,
    "twonn_subsamples": 2,
    "twonn_fraction": 0.5,
    "nonlinear_hidden": [32],
    "nonlinear_epochs": 5,
    "nonlinear_batch_size": 64,
    "nonlinear_lr": 0.01,
    "threads": 1,
}
HERE = Path(__file__).parent
SCHEMA = str(HERE.parent / "workflow" / "schemas" / "config.schema.yaml")
STUDY = yaml.safe_load((HERE / "tiny_config.yaml").read_text()) | {
    "architectures": {
        "sym": {"family": "symmetric", "encoder": [12], "decoder": [12]},
        "dec": {"family": "decoder-heavy", "encoder": [], "decoder": [8, 12]},
    },
    "bottlenecks": [3],
    "seeds": [0, 1],
}
STUDY.pop("truncation", None)


def fake_data(labels: bool, n_train=200, n_test=100, dim=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = {"x_train": torch.rand(n_train, dim, generator=g), "x_test": torch.rand(n_test, dim, generator=g)}
    if labels:
        data["y_train"] = torch.randint(0, 3, (n_train,), generator=g)
        data["y_test"] = torch.randint(0, 3, (n_test,), generator=g)
    else:
        data["factors_train"] = torch.rand(n_train, 2, generator=g)
        data["factors_test"] = torch.rand(n_test, 2, generator=g)
    return data


def saved_cell(tmp_path, kind="ae", arch="sym", dim=10, activation="relu"):
    """The seeds of one cell as model.pt payloads: "trained" weights are the model's initial weights (the
    properties hold for any weights); ``init_state`` is those of another seed's draw."""
    cfg = copy.deepcopy(STUDY)
    study.validate(cfg, SCHEMA)
    runs = [study.resolve_run(cfg, "digits", kind, arch, 3, activation, s) for s in cfg["seeds"]]
    paths = []
    for run in runs:
        model = build_model(run, dim)
        init = build_model(run | {"seed": run["seed"] + 100}, dim).state_dict()
        path = tmp_path / f"s{run['seed']}.pt"
        torch.save({"config": run, "in_dim": dim, "state": model.state_dict(), "init_state": init}, path)
        paths.append(str(path))
    return runs, paths


def trained_rows(profile):
    return profile[profile["state"] == "trained"]


def test_cut_activations_are_the_prefixes_in_float64():
    run = study.resolve_run(copy.deepcopy(STUDY), "digits", "vae", "sym", 3, "relu", 0)
    model = build_model(run, 10)
    x = torch.rand(7, 10)
    acts = probes.cut_activations(model, x)
    assert len(acts) == model.n_layers + 1
    for k, h in enumerate(acts):
        assert h.dtype == np.float64
        np.testing.assert_allclose(h, model.forward_to(x, k).detach().double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(acts[model.bottleneck_cut], model.posterior(x)[0].detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_profile_cell_properties(tmp_path, kind):
    runs, paths = saved_cell(tmp_path, kind=kind)
    data = fake_data(labels=True)
    profiles, cka = probes.profile_cell(runs, paths, data, OPTIONS)
    assert set(profiles) == {run["run_id"] for run in runs}
    prof = profiles[runs[0]["run_id"]]
    assert list(prof.columns) == truncation_tables.PROFILE_COLUMNS
    assert set(prof["state"]) == {"trained", "init"}
    prof = trained_rows(prof)
    model = build_model(runs[0], 10)
    L = model.n_layers
    cuts = prof.drop_duplicates("cut").set_index("cut")
    assert list(cuts.index) == list(range(L + 1))
    assert list(cuts["layer"]) == model.cut_names()
    assert (cuts["side"] == "bottleneck").sum() == 1 and cuts.loc[model.bottleneck_cut, "side"] == "bottleneck"
    np.testing.assert_allclose(cuts["relative_depth"], np.arange(L + 1) / L)
    wide = prof.pivot(index="cut", columns="metric", values="value")
    np.testing.assert_array_equal(wide["width"], [10, 12, 3, 12, 10])
    assert wide.loc[model.bottleneck_cut, "cka_bottleneck"] == pytest.approx(1.0)
    assert wide.loc[0, "cka_input"] == pytest.approx(1.0) and wide.loc[L, "cka_output"] == pytest.approx(1.0)
    assert wide.loc[0, "linear_r2"] > 0.999  # the input reconstructs itself
    assert ((wide["label_accuracy"] >= 0) & (wide["label_accuracy"] <= 1)).all()
    assert "factor_r2_linear" not in wide  # digits-like data: labels, no factors
    # the cross-seed CKA of the input cut compares the same data with itself
    assert wide.loc[0, "cka_seeds"] == pytest.approx(1.0)
    # within one model the CKA matrix is symmetric with a unit diagonal
    within = cka[(cka["seed_a"] == 0) & (cka["seed_b"] == 0)].pivot(index="cut_a", columns="cut_b", values="cka")
    np.testing.assert_allclose(within.to_numpy(), within.to_numpy().T, atol=1e-12)
    np.testing.assert_allclose(np.diag(within), 1.0, atol=1e-9)
    assert set(zip(cka["seed_a"], cka["seed_b"], strict=True)) == {(0, 0), (0, 1), (1, 1)}


def test_profile_cell_factor_probes(tmp_path):
    runs, paths = saved_cell(tmp_path, arch="dec")
    profiles, _ = probes.profile_cell(runs, paths, fake_data(labels=False), OPTIONS)
    metrics_present = set(trained_rows(profiles[runs[0]["run_id"]])["metric"])
    assert {"factor_r2_linear", "factor_r2_nonlinear", "factor0_r2_linear", "factor1_r2_nonlinear"} <= metrics_present
    assert "label_accuracy" not in metrics_present


def test_the_mean_factor_r2_weighs_every_factor_once_an_angle_being_two_columns(tmp_path):
    """shapes' orientation is two columns (sine, cosine): unweighted it would be 2/5 of the mean factor R²."""
    assert datasets.factor_weights(["scale", "orientation_sin", "orientation_cos", "x", "y"]) == [1, 0.5, 0.5, 1, 1]
    assert datasets.factor_weights(["factor0", "factor1"]) == [1, 1]
    assert datasets.factor_columns("shapes", STUDY["data"] | {"shapes": {}}) == list(datasets.SHAPES_FACTORS)
    runs, paths = saved_cell(tmp_path, arch="dec")
    data = fake_data(labels=False)
    g = torch.Generator().manual_seed(5)
    for split, n in (("train", 200), ("test", 100)):
        data[f"factors_{split}"] = torch.cat([data[f"factors_{split}"], torch.rand(n, 1, generator=g)], dim=1)
    named = OPTIONS | {"factor_columns": ["angle_sin", "angle_cos", "x"]}
    for options, weights in ((OPTIONS, [1, 1, 1]), (named, [0.5, 0.5, 1])):
        profiles, _ = probes.profile_cell(runs, paths, data, options)
        prof = trained_rows(profiles[runs[0]["run_id"]])
        for probe in ("linear", "nonlinear"):
            for cut, values in prof.groupby("cut"):
                value = values.set_index("metric")["value"]
                per_column = np.array([value[f"factor{k}_r2_{probe}"] for k in range(3)])
                expected = np.dot(per_column, weights) / sum(weights)
                assert value[f"factor_r2_{probe}"] == pytest.approx(expected, rel=1e-12), (probe, cut, weights)
    with pytest.raises(ValueError, match="factor_columns names 2 columns"):
        probes.probe_data(data, OPTIONS | {"factor_columns": ["x", "y"]})
    # a column without a finite R² is left out of the mean, with its weight
    assert probes.factor_mean([0.2, np.nan, 0.8], np.array([0.5, 0.5, 1.0])) == pytest.approx((0.1 + 0.8) / 1.5)


def test_profile_cell_is_reproducible(tmp_path):
    runs, paths = saved_cell(tmp_path)
    data = fake_data(labels=True)
    a, _ = probes.profile_cell(runs, paths, data, OPTIONS)
    b, _ = probes.profile_cell(runs, paths, data, OPTIONS)
    for rid in a:
        pd.testing.assert_frame_equal(a[rid], b[rid])


def test_mlp_probe_informative_input_beats_noise_in_one_padded_ensemble():
    r = np.random.default_rng(0)
    z = r.uniform(-1, 1, size=(600, 2))
    y = np.column_stack([np.sin(2 * z[:, 0]), z[:, 0] * z[:, 1]])
    noise = r.normal(size=(600, 6))  # wider: the 2-D input is zero-padded to 6 features
    fit, test = slice(0, 400), slice(400, 600)
    options = OPTIONS | {"nonlinear_epochs": 60, "nonlinear_batch_size": 100, "nonlinear_lr": 0.02}
    mse, r2 = probes.mlp_probe([z[fit], noise[fit]], [z[test], noise[test]], y[fit], y[test], options)
    assert r2.shape == (2, 2) and mse.shape == (2,)
    assert r2[0].min() > 0.8  # a nonlinear function of the input is recovered
    assert r2[1].max() < 0.1  # noise holds nothing
    # the ridge probe cannot recover the product term: the nonlinear probe measures something more
    lin = metrics.ridge_reconstruction(z[fit], y[fit], z[test], y[test])
    assert lin["r2_per_target"][1] < 0.1 < r2[0, 1]


def test_a_member_s_nonlinear_probe_is_the_same_alone_or_among_others():
    """A member's probe does not depend on which members share its batch (their number, their widths): a model
    profiled alone (aedissect.profile) gets the numbers of its truncate job, whatever seeds the job holds."""
    r = np.random.default_rng(1)
    h = [r.normal(size=(300, width)) for width in (3, 5, 8)]
    y = np.column_stack([np.tanh(h[1][:, 0]), h[1][:, 1] ** 2])
    fit, test = slice(0, 200), slice(200, 300)
    options = OPTIONS | {"nonlinear_epochs": 3, "nonlinear_batch_size": 50, "nonlinear_lr": 0.01}
    alone = probes.mlp_probe([h[1][fit]], [h[1][test]], y[fit], y[test], options)
    among = probes.mlp_probe([x[fit] for x in h], [x[test] for x in h], y[fit], y[test], options)
    np.testing.assert_allclose(among[0][1], alone[0][0], rtol=1e-6)
    np.testing.assert_allclose(among[1][1], alone[1][0], rtol=1e-6)


def profile_frame(run_id, values_by_metric, bottleneck_cut):
    rows = []
    L = len(next(iter(values_by_metric.values()))) - 1
    for metric, values in values_by_metric.items():
        for cut, value in enumerate(values):
            side = "bottleneck" if cut == bottleneck_cut else ("encoder" if cut < bottleneck_cut else "decoder")
            rows.append((run_id, "trained", cut, f"c{cut}", side, cut / L, metric, value))
    return pd.DataFrame(rows, columns=truncation_tables.PROFILE_COLUMNS)


def test_adam_is_torch_optim_adam_to_the_bit():
    """probes.Adam replaces torch.optim.Adam (whose first use imports torch._dynamo): the same update."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randn(64, 3, generator=g)
    ours = [torch.randn(5, 8, generator=g).requires_grad_(), torch.randn(8, 3, generator=g).requires_grad_()]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    mine, reference = probes.Adam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01)
    for step in range(50):
        batch = slice(step % 4 * 16, step % 4 * 16 + 16)
        for params in (ours, theirs):
            (torch.relu(x[batch] @ params[0]) @ params[1] - y[batch]).pow(2).mean().backward()
        mine.step([p.grad for p in ours])
        reference.step()
        for p in ours + theirs:
            p.grad = None
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_mlp_gradients_are_autograds_to_the_bit():
    """The nonlinear probe back-propagates by hand: the same gradients as autograd on its loss, for two hidden
    layers, zero-padded inputs and a batch whose 1 / N is not a power of two."""
    g = torch.Generator().manual_seed(1)
    G, n, widths, sizes = 3, 29, [4, 6, 2], [6, 7, 5, 3]
    x = torch.randn(G, n, 6, generator=g) * (torch.arange(6) < torch.tensor(widths)[:, None, None])
    y = torch.randn(n, 3, generator=g)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        params += [torch.randn(G, a, b, generator=g), torch.randn(G, 1, b, generator=g)]
    leaves = [p.clone().requires_grad_() for p in params]
    (probes.mlp_forward(leaves, x)[-1] - y).pow(2).mean(dim=(1, 2)).sum().backward()
    for ours, leaf in zip(probes.mlp_gradients(params, x, y), leaves, strict=True):
        assert torch.equal(ours, leaf.grad)
    assert (probes.mlp_gradients(params, x, y)[0][0, 4:] == 0).all()  # padding: no gradient


def test_factor_locus_is_the_first_cut_reaching_95_percent_of_the_maximum_and_the_maximum():
    prof = pd.concat(
        [
            # bottleneck cut 3, maximum 1.0 at cut 4; 0.95 is reached at cuts 1, 3 and 4: the first is cut 1, not the
            # cut of the maximum nor the reaching cut nearest the bottleneck (cut 3)
            profile_frame("a", {"factor_r2_linear": [0.1, 0.96, 0.5, 0.97, 1.0, 0.2]}, bottleneck_cut=3),
            # a tie of the maximum goes to the cut nearest the bottleneck (cut 2); 95% of 0.8 first reached at cut 1
            profile_frame("b", {"factor_r2_linear": [0.0, 0.77, 0.8, 0.6, 0.8]}, bottleneck_cut=2),
            # no cut holds anything: no factor locus
            profile_frame("c", {"factor_r2_linear": [-0.2, -0.1, -0.3, -0.5, -0.4], "twonn": [5, 4, 3, 4, 5]}, 2),
        ]
    )
    locus = truncation_tables.encoding_locus(prof).set_index(["run_id", "locus"])
    assert (locus.loc[("a", "factor_r2_95"), "cut"], locus.loc[("a", "factor_r2_95"), "offset"]) == (1, -2)
    assert locus.loc[("a", "factor_r2_95"), "relative_offset"] == pytest.approx(-2 / 5)
    assert locus.loc[("a", "factor_r2_95"), "value"] == pytest.approx(0.96)
    assert (locus.loc[("a", "factor_r2_max"), "cut"], locus.loc[("a", "factor_r2_max"), "offset"]) == (4, 1)
    assert locus.loc[("a", "factor_r2_max"), "relative_offset"] == pytest.approx(1 / 5)
    assert locus.loc[("b", "factor_r2_95"), "offset"] == -1 and locus.loc[("b", "factor_r2_max"), "offset"] == 0
    assert {loc for rid, loc in locus.index if rid == "c"} == {"twonn_min"}
    assert set(locus["metric"][locus.index.get_level_values("locus").str.startswith("factor")]) == {"factor_r2_linear"}


def test_encoding_locus_offsets_signs_ties_and_bottleneck_exclusion():
    prof = pd.concat(
        [
            profile_frame(
                "a",
                {
                    "twonn": [9, 5, 3, 4, 8],  # minimum before the bottleneck (cut 3): offset -1
                    "participation_ratio": [9, 6, 5, 2, 1],  # minimum at the output: offset +1
                    "cka_bottleneck": [0.2, 0.5, 0.9, 1.0, 0.7],  # best outside the bottleneck: cut 2
                },
                bottleneck_cut=3,
            ),
            profile_frame(
                "b",
                {
                    "twonn": [5, 2, 2, 2, 6],
                    "participation_ratio": [4, 3, 1, 3, 4],
                    "cka_bottleneck": [0, 0.8, 1, 0.8, 0],
                },
                bottleneck_cut=2,
            ),
        ]
    )
    locus = truncation_tables.encoding_locus(prof).set_index(["run_id", "locus"])
    assert locus.loc[("a", "twonn_min"), "offset"] == -1
    assert locus.loc[("a", "pr_min"), "offset"] == 1
    assert locus.loc[("a", "cka_bottleneck_max"), "cut"] == 2
    assert locus.loc[("a", "twonn_min"), "relative_offset"] == pytest.approx(-0.25)
    assert locus.loc[("b", "twonn_min"), "offset"] == 0  # a tie goes to the cut nearest the bottleneck
    assert locus.loc[("b", "pr_min"), "offset"] == 0
    assert abs(locus.loc[("b", "cka_bottleneck_max"), "offset"]) == 1


def test_tables_join_config_and_summarise_over_seeds(tmp_path):
    cfg = copy.deepcopy(STUDY)
    study.validate(cfg, SCHEMA)
    assert cfg["truncation"]["max_points"] == 2000  # schema defaults fill a missing section
    runs = [r for r in study.grid(cfg) if r["dataset"] == "digits" and r["kind"] == "ae" and r["arch"] == "sym"]
    paths = []
    for i, run in enumerate(runs):
        p = tmp_path / f"p{i}.csv"
        profile_frame(run["run_id"], {"twonn": [5, 3 + i, 2, 4, 5], "participation_ratio": [5, 4, 3, 2, 6]}, 2).to_csv(
            p, index=False
        )
        paths.append(str(p))
    cka_path = tmp_path / "cka.csv"
    cka = pd.DataFrame([(0, 1, 0, 0, "c0", "c0", 1.0, 1.0)], columns=probes.CKA_COLUMNS)
    cka.assign(cell=runs[0]["run_id"].rsplit("/", 1)[0]).to_csv(cka_path, index=False)
    # the same network at init: its own summary rows, never mixed into the trained ones nor the loci
    init = pd.read_csv(paths[0]).assign(state="init", value=100.0)
    pd.concat([pd.read_csv(paths[0]), init]).to_csv(paths[0], index=False)
    tables = truncation_tables.tables(runs, paths, [str(cka_path)])
    assert {"family", "bottleneck", "seed", "config_hash", "state"} <= set(tables["profiles"].columns)
    summary = tables["summary"]
    row = summary[(summary["metric"] == "twonn") & (summary["cut"] == 1) & (summary["state"] == "trained")].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(3.5)
    at_init = summary[(summary["metric"] == "twonn") & (summary["cut"] == 1) & (summary["state"] == "init")].iloc[0]
    assert at_init["n"] == 1 and at_init["mean"] == 100
    assert len(tables["locus"]) == 2 * 2  # two runs x (TwoNN, PR); no CKA rows here
    assert tables["reparam"].empty and tables["reparam_summary"].empty  # no reparametrisation files given
    assert tables["cka"]["run_id"].iloc[0] == runs[0]["run_id"]


def test_the_workflow_draws_every_part_of_the_layer_profile():
    from aedissect.analysis import plotting_truncation

    declared = re.search(r"^LAYER_PROFILE_PARTS = (\[.*\])$", (REPO / "workflow/rules/common.smk").read_text(), re.M)
    assert ast.literal_eval(declared.group(1)) == list(plotting_truncation.PROFILE_PARTS)


def test_figures_draw_from_the_tables(tmp_path):
    from aedissect.analysis import plotting_truncation, style

    runs, paths = saved_cell(tmp_path)
    profiles, cka = probes.profile_cell(runs, paths, fake_data(labels=True), OPTIONS)
    profile_paths = []
    for i, (_, frame) in enumerate(profiles.items()):
        profile_paths.append(str(tmp_path / f"p{i}.csv"))
        frame.to_csv(profile_paths[-1], index=False)
    cka.assign(cell=runs[0]["run_id"].rsplit("/", 1)[0]).to_csv(tmp_path / "cka.csv", index=False)
    tables = truncation_tables.tables(runs, profile_paths, [str(tmp_path / "cka.csv")])
    # the dimension part draws each line's profile at init beside it (thin); the other parts do not
    for part in plotting_truncation.PROFILE_PARTS:
        fig = plotting_truncation.layer_profile(tables["profiles"], "digits", part)
        widths = {line.get_linewidth() for ax in fig.axes for line in ax.get_lines()}
        assert (plotting_truncation.INIT_STYLE["lw"] in widths) == (part == "dimension"), part
        style.plt.close(fig)
    for fig in (
        *(
            plotting_truncation.layer_profile(tables["profiles"], "digits", part)
            for part in plotting_truncation.PROFILE_PARTS
        ),
        plotting_truncation.geometry_profiles(tables["profiles"]),
        plotting_truncation.cka_heatmaps(tables["cka"], "digits"),
        plotting_truncation.encoding_locus(tables["locus"]),
    ):
        style.save(fig, tmp_path / "f.pdf", tmp_path / "f.png", dpi=50)
        assert (tmp_path / "f.png").stat().st_size > 0


def test_label_probe_of_a_profile_agrees_with_a_reference_fit(tmp_path):
    from sklearn.linear_model import LogisticRegression

    runs, paths = saved_cell(tmp_path)
    data = fake_data(labels=True)
    # labels a linear probe can read from the input: labels misaligned with their samples would fall to chance
    data["y_train"], data["y_test"] = data["x_train"][:, :3].argmax(1), data["x_test"][:, :3].argmax(1)
    options = OPTIONS | {"probe_max_iter": 500}
    profiles, _ = probes.profile_cell(runs[:1], paths[:1], data, options)
    wide = trained_rows(profiles[runs[0]["run_id"]]).pivot(index="cut", columns="metric", values="value")
    probe, test = probes.split_indices(200, 100, options)
    y_fit, y_test = data["y_train"][probe].numpy(), data["y_test"][test].numpy()
    model = build_model(runs[0], 10)  # the weights saved_cell stored
    fits = probes.cut_activations(model, data["x_train"][probe])
    tests = probes.cut_activations(model, data["x_test"][test])
    for cut, (h_fit, h_test) in enumerate(zip(fits, tests, strict=True)):
        mean, scale = h_fit.mean(0), np.sqrt(h_fit.var(0).mean())  # centred, one scale for all units
        reference = LogisticRegression(C=options["probe_C"], max_iter=2000).fit((h_fit - mean) / scale, y_fit)
        expected = np.mean(reference.predict((h_test - mean) / scale) == y_test)
        assert wide.loc[cut, "label_accuracy"] == pytest.approx(expected, abs=0.03), cut
    assert wide.loc[0, "label_accuracy"] > 0.6  # far above chance (1/3) on the input itself


def test_jacobian_and_twonn_mle_metrics_are_those_of_their_modules(tmp_path):
    from aedissect import inference

    runs, paths = saved_cell(tmp_path, kind="vae")
    data = fake_data(labels=True)
    profiles, _ = probes.profile_cell(runs[:1], paths[:1], data, OPTIONS)
    wide = trained_rows(profiles[runs[0]["run_id"]]).pivot(index="cut", columns="metric", values="value")
    model = build_model(runs[0], 10)
    _, x_fit, x_test, x_jac = probes.probe_data(data, OPTIONS)
    assert x_jac.shape[0] == min(probes.JACOBIAN_POINTS, x_test.shape[0])
    expected = jacobian.jacobian_rank_profile(model, x_jac, rel_threshold=probes.JACOBIAN_REL_THRESHOLD)
    np.testing.assert_array_equal(wide["jacobian_rank"], [p["rank_mean"] for p in expected])
    np.testing.assert_array_equal(wide["jacobian_pr"], [p["pr_mean"] for p in expected])
    shares = {r["cut"]: r["share"] for r in jacobian.reduction_shares(expected)}
    assert list(wide["jacobian_reduction_share"].dropna().index) == list(range(1, model.bottleneck_cut + 1))
    np.testing.assert_allclose(wide["jacobian_reduction_share"].dropna(), list(shares.values()), rtol=1e-12)
    assert wide["jacobian_reduction_share"].sum() == pytest.approx(1.0)
    # on the same points as the regression TwoNN: the scored test points, the VAE's code in its posterior's units
    for cut, h in enumerate(probes.cut_activations(model, x_test, code_scale=probes.posterior_scale(model, x_fit))):
        mle = inference.twonn_mle(h)
        assert (wide.loc[cut, "twonn_mle"], wide.loc[cut, "twonn_mle_se"]) == (mle["dimension"], mle["se"])


def test_init_rows_profile_the_initial_weights_and_leave_the_trained_rows_alone(tmp_path):
    runs, paths = saved_cell(tmp_path)
    data = fake_data(labels=True)
    with_init, _ = probes.profile_cell(runs, paths, data, OPTIONS)
    without, _ = probes.profile_cell(runs, paths, data, OPTIONS, init=False)
    prof = with_init[runs[0]["run_id"]]
    pd.testing.assert_frame_equal(trained_rows(prof).reset_index(drop=True), without[runs[0]["run_id"]])
    assert set(without[runs[0]["run_id"]]["state"]) == {"trained"}
    init = prof[prof["state"] == "init"]
    assert list(init.index) == list(range(len(init) and init.index[0], len(prof)))  # after the trained rows
    # the cheap metrics only: no nonlinear probes, no cross-seed CKA, no label probe, no TwoNN subsamples
    left_out = set(trained_rows(prof)["metric"]) - set(init["metric"])
    assert left_out == {
        "nonlinear_mse",
        "nonlinear_r2",
        "cka_seeds",
        "cka_seeds_debiased",
        "label_accuracy",
        "twonn_sub_mean",
        "twonn_sub_std",
    }
    # they are the initial weights' values, which differ from the trained ones
    payload = torch.load(paths[0], weights_only=True)
    model = build_model(runs[0], 10)
    model.load_state_dict(payload["init_state"])
    targets, x_fit, x_test, x_jac = probes.probe_data(data, OPTIONS)
    expected = probes.cheap_profile(model, x_fit, x_test, x_jac, targets, OPTIONS)
    got = init.pivot(index="cut", columns="metric", values="value")
    for cut, values in expected.items():
        for metric, value in values.items():
            assert got.loc[cut, metric] == pytest.approx(value, rel=1e-12, nan_ok=True), (cut, metric)
    trained = trained_rows(prof).pivot(index="cut", columns="metric", values="value")
    hidden = [c for c in got.index if 0 < c < got.index.max()]
    for metric in ("participation_ratio", "jacobian_pr", "linear_r2"):
        assert not np.allclose(got.loc[hidden, metric], trained.loc[hidden, metric]), metric
    # a model given as itself has no initial weights: trained rows only
    direct, _ = probes.profile_cell(runs[:1], [build_model(runs[0], 10)], data, OPTIONS)
    assert set(direct[runs[0]["run_id"]]["state"]) == {"trained"}


def test_the_input_cut_has_the_datas_own_metrics_in_every_run_and_state(tmp_path):
    """Cut 0 is the data itself, so its geometry and linear probes (computed once per cell) are those of the data,
    the same for every seed, at init and for the reparametrised twin."""
    runs, paths = saved_cell(tmp_path)
    data = fake_data(labels=True)
    profiles, _ = probes.profile_cell(runs, paths, data, OPTIONS)
    twins = probes.reparam_cell(runs, paths, data, OPTIONS, profiles)
    targets, _, _, _ = probes.probe_data(data, OPTIONS)
    x_fit, x_test = targets["x_fit"], targets["x_test"]
    cheap = OPTIONS | {"twonn_subsamples": 0}
    ridge = {k: v for k, v in targets.items() if not k.startswith("y_")}
    expected = {
        "trained": probes.geometry(x_test, OPTIONS) | probes.linear_probes(x_fit, x_test, targets, OPTIONS),
        "init": probes.geometry(x_test, cheap) | probes.linear_probes(x_fit, x_test, ridge, cheap),
    }
    assert "label_accuracy" in expected["trained"] and "twonn_sub_mean" in expected["trained"]
    for run in runs:
        prof = profiles[run["run_id"]]
        for state, values in expected.items():
            got = prof[(prof["cut"] == 0) & (prof["state"] == state)].set_index("metric")["value"]
            assert {metric: got[metric] for metric in values} == values, state
        twin = twins[(twins["run_id"] == run["run_id"]) & (twins["cut"] == 0)].set_index("metric")["value_reparam"]
        assert {metric: twin[metric] for metric in expected["init"]} == expected["init"]


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_reparam_table_keeps_the_function_and_the_rank_and_moves_the_participation_ratio(tmp_path, kind):
    runs, paths = saved_cell(tmp_path, kind=kind)
    data = fake_data(labels=True)
    data_path = tmp_path / "data.pt"
    torch.save(data, data_path)
    out = tmp_path / "out"
    profile_paths = [str(out / f"p{run['seed']}.csv") for run in runs]
    probes.truncate_cell(
        runs,
        paths,
        str(data_path),
        OPTIONS | {"device": "cpu"},
        profile_paths,
        str(out / "cka.csv"),
        reparam_path=str(out / "reparam.csv"),
    )
    table = pd.read_csv(out / "reparam.csv")
    assert list(table.columns) == truncation_tables.REPARAM_COLUMNS
    assert set(table["run_id"]) == {run["run_id"] for run in runs}
    assert (table["function_gap"] < 1e-5).all()
    # the twin is the one reparam.reparametrize builds from the run's seed
    model = build_model(runs[1], 10)
    _, info = reparam.reparametrize(model, seed=runs[1]["seed"], x=probes.probe_data(data, OPTIONS)[2])
    gap = table.loc[table["run_id"] == runs[1]["run_id"], "function_gap"].iloc[0]
    assert gap == pytest.approx(info["function_gap"], rel=1e-9)
    rank = table[table["metric"] == "jacobian_rank"]
    assert len(rank) == len(runs) * (model.n_layers + 1) and (rank["abs_change"] == 0).all()
    pr = table[(table["metric"] == "participation_ratio") & (table["cut"] == model.bottleneck_cut)]
    if kind == "ae":  # the code mixed by a map of condition 10
        assert (pr["rel_change"] > 0.01).all()
    else:  # the VAE's code only permuted with signs (the same VAE), read in its posterior's units
        assert (pr["rel_change"] < 1e-6).all()
    inputs = table[(table["cut"] == 0) & table["metric"].isin(["participation_ratio", "twonn", "linear_r2"])]
    assert (inputs["abs_change"] == 0).all()  # the input cut is the same data
    # (the CSV keeps 10 significant digits of each value)
    np.testing.assert_allclose(
        table["abs_change"], (table["value_reparam"] - table["value_original"]).abs(), rtol=1e-8, atol=1e-9
    )
    # the original values are the trained rows of the layer profile
    prof = pd.read_csv(profile_paths[0])
    prof = prof[prof["state"] == "trained"].set_index(["cut", "metric"])["value"]
    mine = table[table["run_id"] == runs[0]["run_id"]].set_index(["cut", "metric"])["value_original"]
    pd.testing.assert_series_equal(mine, prof.loc[mine.index], check_names=False)
    # gathered into the study table with config columns and summarised per metric
    tables = truncation_tables.tables(runs, profile_paths, [str(out / "cka.csv")], [str(out / "reparam.csv")])
    assert {"family", "seed"} <= set(tables["reparam"].columns) and len(tables["reparam"]) == len(table)
    summary = tables["reparam_summary"].set_index("metric")
    assert summary.loc["jacobian_rank", "invariant"] and summary.loc["width", "invariant"]
    assert not summary.loc["participation_ratio", "invariant"]
    assert summary.loc["participation_ratio", "max_rel_change"] == pytest.approx(
        table.loc[table["metric"] == "participation_ratio", "rel_change"].max()
    )
    assert summary.loc["jacobian_rank", "n_runs"] == len(runs)


def test_reparam_table_is_empty_for_activations_without_unit_rescaling(tmp_path):
    runs, paths = saved_cell(tmp_path, activation="tanh")
    data = fake_data(labels=True)
    profiles, _ = probes.profile_cell(runs, paths, data, OPTIONS)
    table = probes.reparam_cell(runs, paths, data, OPTIONS, profiles)
    assert table.empty and list(table.columns) == truncation_tables.REPARAM_COLUMNS


def test_the_truncate_job_limits_the_threads_of_scipys_blas_too():
    """threadpool_limits reaches only the libraries loaded when it is entered; scipy's OpenBLAS (the label probe's
    solver) is not numpy's, so the truncate script must load it before (fresh interpreter: nothing loaded yet)."""
    script = ast.parse((REPO / "workflow" / "scripts" / "truncate.py").read_text())
    imports = [ast.unparse(node) for node in script.body if isinstance(node, ast.Import | ast.ImportFrom)]
    probe = """
import numpy as np
from threadpoolctl import threadpool_info
from aedissect import metrics
with threadpool_limits(limits=1):
    r = np.random.default_rng(0)
    metrics.linear_probe_accuracy(r.normal(size=(40, 3)), np.arange(40) % 2, r.normal(size=(9, 3)), np.arange(9) % 2)
    threads = {(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"}
    assert len(threads) > 1 and {n for _, n in threads} == {1}, threads
"""
    # run from workflow/: the package of this checkout, whatever the venv has installed
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(imports) + probe], capture_output=True, text=True, cwd=REPO / "workflow"
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
