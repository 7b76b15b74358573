"""aedissect.nets.probes: activations from one pass, the per-run layer profile, probes, CKA matrices, loci."""

import ast
import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aedissect import config as study
from aedissect import metrics
from aedissect.analysis import truncation_tables
from aedissect.nets import probes
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


def saved_cell(tmp_path, kind="ae", arch="sym", dim=10):
    """The seeds of one cell as model.pt payloads (initial weights: the properties hold for any weights)."""
    cfg = copy.deepcopy(STUDY)
    study.validate(cfg, SCHEMA)
    runs = [study.resolve_run(cfg, "digits", kind, arch, 3, "relu", s) for s in cfg["seeds"]]
    paths = []
    for run in runs:
        model = build_model(run, dim)
        path = tmp_path / f"s{run['seed']}.pt"
        torch.save({"config": run, "in_dim": dim, "state": model.state_dict()}, path)
        paths.append(str(path))
    return runs, paths


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
    metrics_present = set(profiles[runs[0]["run_id"]]["metric"])
    assert {"factor_r2_linear", "factor_r2_nonlinear", "factor0_r2_linear", "factor1_r2_nonlinear"} <= metrics_present
    assert "label_accuracy" not in metrics_present


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


def profile_frame(run_id, values_by_metric, bottleneck_cut):
    rows = []
    L = len(next(iter(values_by_metric.values()))) - 1
    for metric, values in values_by_metric.items():
        for cut, value in enumerate(values):
            side = "bottleneck" if cut == bottleneck_cut else ("encoder" if cut < bottleneck_cut else "decoder")
            rows.append((run_id, cut, f"c{cut}", side, cut / L, metric, value))
    return pd.DataFrame(rows, columns=truncation_tables.PROFILE_COLUMNS)


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
    tables = truncation_tables.tables(runs, paths, [str(cka_path)])
    assert {"family", "bottleneck", "seed", "config_hash"} <= set(tables["profiles"].columns)
    summary = tables["summary"]
    row = summary[(summary["metric"] == "twonn") & (summary["cut"] == 1)].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(3.5)
    assert len(tables["locus"]) == 2 * 2  # two runs x (TwoNN, PR); no CKA rows here
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
    wide = profiles[runs[0]["run_id"]].pivot(index="cut", columns="metric", values="value")
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
