"""Controls: trained networks against their closed-form optima (aedissect.controls, aedissect.nets.controls), the
activation an architecture fixes, convergence, and the controls table."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ortho_group

from aedissect import config, controls, references
from aedissect.analysis import aggregate
from aedissect.nets import controls as ncontrols
from aedissect.nets import jobs, training
from aedissect.nets.models import build_model
from conftest import REPO, SCHEMA, load_yaml

STUDY = {
    "architectures": {
        "linear": {"family": "linear", "encoder": [4], "decoder": [4], "activation": "linear"},
        "enc": {"family": "encoder-heavy", "encoder": [8, 4], "decoder": []},
        "sym": {"family": "symmetric", "encoder": [6], "decoder": [6]},
    },
    "training": {
        "epochs": 300,
        "batch_size": 200,  # full batch
        "lr": 0.03,
        "weight_decay": 0.0,
        "keep_epochs": [],
        "checkpoint_every": 1000,
    },
    "vae": {"beta": 1.0, "likelihood": "gaussian", "sigma": 0.1},
}
Z = 2


@pytest.fixture(scope="module")
def data():
    """200 training samples x 6 dimensions along a random rotation, a large eigen gap after the second (0.49/0.09),
    and a large test split so that the test MSE is close to its expectation."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2200, 6)) * [1.0, 0.7, 0.3, 0.2, 0.1, 0.05]) @ ortho_group.rvs(6, random_state=1) + 0.5
    return {"x_train": torch.tensor(x[:200], dtype=torch.float32), "x_test": torch.tensor(x[200:], dtype=torch.float32)}


@pytest.fixture(scope="module")
def device():
    return training.setup_torch(1, "cpu")


def make_run(kind="ae", arch="linear", seed=0, **training_keys):
    spec = STUDY["architectures"][arch]
    run = config.resolve_run(STUDY, "synthetic", kind, arch, Z, spec.get("activation", "relu"), seed)
    run["training"].update(training_keys)
    return run


def trained(run, data, device):
    result = training.train(run, data, device)
    model = build_model(run, data["x_train"].shape[1])
    model.load_state_dict(result["state"])
    return model, result


def reference(data, vae=STUDY["vae"]):
    return controls.reference(data["x_train"], data["x_test"], Z, vae)


def by_check(rows):
    return {row["check"]: row for row in rows}


# ---------------------------------------------------------------- the linear AE against PCA-z


@pytest.mark.parametrize("epochs", [300, 1])
def test_a_linear_ae_trained_long_enough_reaches_pca_and_an_undertrained_one_fails(data, device, epochs):
    run = make_run(epochs=epochs)
    model, result = trained(run, data, device)
    ref = reference(data)
    measured = ncontrols.measure(model, run, data["x_train"], data["x_test"], ref)
    assert measured["test_mse"] == pytest.approx(result["metrics"]["test_mse"], rel=1e-5)  # the loop's own number
    rows = by_check(controls.control_rows(run, measured, ref))
    assert set(rows) == {"linear_ae_pca_mse", "linear_ae_subspace_angle", "linear_decoder_pca_bound"}
    assert ref["eigen_gap"] > 4 and all(row["applies"] for row in rows.values())
    mse, angle = rows["linear_ae_pca_mse"], rows["linear_ae_subspace_angle"]
    assert mse["reference"] == pytest.approx(references.pca_reference(data["x_train"], data["x_test"], Z)["mse"])
    assert mse["ratio"] == pytest.approx(mse["value"] / mse["reference"])
    if epochs == 300:
        assert mse["ratio"] <= 1.02 and angle["value"] < 5
        assert all(row["passed"] is True for row in rows.values())
    else:
        assert mse["ratio"] > 1.02 and angle["value"] > 5
        assert all(row["passed"] is False for row in rows.values())


def test_the_decoder_angle_is_read_off_the_weights(data, device):
    """The column space of a linear decoder set to PCA's components has angle 0; turned by a known angle out of
    it, that angle."""
    run = make_run()
    ref = reference(data)
    model = build_model(run, 6).double()
    U = ref["components"]
    other = references.pca_reference(data["x_train"], data["x_test"], 3)["components"][:, 2]  # orthogonal to U
    theta = np.radians(20.0)
    turned = U.copy()
    turned[:, 1] = math.cos(theta) * U[:, 1] + math.sin(theta) * other
    for decoder, expected in ((U, 0.0), (turned, 20.0)):
        with torch.no_grad():
            model.layers[2][0].weight.copy_(torch.eye(4, 2, dtype=torch.float64))
            model.layers[3][0].weight.copy_(torch.from_numpy(np.hstack([decoder, np.zeros((6, 2))])))
        weight, _ = ncontrols.affine_map(model.decode, Z)
        assert controls.decoder_angle(weight, U) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- the linear VAE against pPCA


def test_the_closed_form_elbo_of_a_trained_linear_vae_is_the_loops_test_loss_in_expectation(data, device):
    run = make_run("vae", epochs=20)
    model, result = trained(run, data, device)
    x = data["x_test"][:400]
    closed = ncontrols.linear_vae_terms(model, run, x)
    # the loop's loss (loss_terms, as evaluate computes test_loss) averaged over many posterior draws
    m64, x64 = copy.deepcopy(model).double(), x.double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        draws = [float(training.loss_terms(m64, x64, run, generator)["loss"]) for _ in range(2000)]
    se = np.std(draws, ddof=1) / math.sqrt(len(draws))
    assert abs(np.mean(draws) - closed["neg_elbo"]) < 4 * se + 1e-9
    # and the one draw per sample that evaluate() makes, within its Monte Carlo error
    per_sample = float(training.evaluate(model, x, run)["test_loss"])
    assert abs(per_sample - closed["neg_elbo"]) < 4 * np.std(draws, ddof=1) + 1e-6
    # the controls job's nonlinear estimator agrees with the closed form too
    assert ncontrols.expected_negative_elbo(m64, x64, run, 200) == pytest.approx(closed["neg_elbo"], rel=2e-3)


def turned(columns, column, degrees, towards):
    """``columns`` with one column turned by ``degrees`` towards the unit vector ``towards`` (orthogonal to all of
    them), its norm kept."""
    out, theta = columns.copy(), np.radians(degrees)
    out[:, column] = math.cos(theta) * out[:, column] + math.sin(theta) * np.linalg.norm(out[:, column]) * towards
    return out


def ppca_vae(run, data, turn_degrees=0.0):
    """A linear VAE (6 -> 4 -> 2 -> 4 -> 6) whose weights are pPCA's optimum, its first latent's decoder column
    turned by ``turn_degrees`` towards the third principal direction."""
    ppca = references.ppca_optimum(data["x_train"], Z, run["vae"]["sigma"], run["vae"]["beta"])
    enc = ppca["enc_weight"]
    third = references.pca_reference(data["x_train"], data["x_test"], 3)["components"][:, 2]
    decoder = turned(ppca["W"], 0, turn_degrees, third)
    model = build_model(run, 6).double()
    eye42, zeros = torch.eye(4, 2, dtype=torch.float64), torch.zeros
    layers = [layer[0] for layer in model.layers]
    with torch.no_grad():
        layers[0].weight.copy_(torch.from_numpy(np.vstack([enc, np.zeros((2, 6))])))
        layers[0].bias.copy_(torch.from_numpy(np.concatenate([-enc @ ppca["mean"], [0.0, 0.0]])))
        layers[1].weight.copy_(zeros(4, 4, dtype=torch.float64))
        layers[1].weight[:2, :2] = torch.eye(2, dtype=torch.float64)  # mu = the first two hidden units
        layers[1].bias.copy_(torch.from_numpy(np.concatenate([[0.0, 0.0], np.log(ppca["posterior_var"])])))
        layers[2].weight.copy_(eye42)
        layers[2].bias.zero_()
        layers[3].weight.copy_(torch.from_numpy(np.hstack([decoder, np.zeros((6, 2))])))
        layers[3].bias.copy_(torch.from_numpy(ppca["mean"]))
    return model


@pytest.mark.parametrize("turn", [0.0, 30.0])
def test_a_linear_vae_at_the_ppca_optimum_passes_and_one_turned_away_fails(data, turn):
    run = make_run("vae")
    ref = reference(data)
    assert ref["ppca_n_active"] == Z and ref["ppca_eigen_gap"] > 1.3
    measured = ncontrols.measure(ppca_vae(run, data, turn), run, data["x_train"], data["x_test"], ref)
    rows = by_check(controls.control_rows(run, measured, ref))
    assert set(rows) == {"linear_vae_ppca_elbo", "linear_vae_subspace_angle"}
    elbo, angle = rows["linear_vae_ppca_elbo"], rows["linear_vae_subspace_angle"]
    nothing = references.no_latent_negative_elbo(data["x_train"], data["x_test"], run["vae"]["sigma"])
    assert ref["no_latent_neg_elbo"] == pytest.approx(nothing) and nothing > elbo["reference"]
    assert elbo["ratio"] == pytest.approx((elbo["value"] - elbo["reference"]) / (nothing - elbo["reference"]))
    assert elbo["threshold"] == controls.ELBO_EXCESS_LIMIT == 0.02
    assert angle["value"] == pytest.approx(turn, abs=1e-6) and "2 of 2 latents identified" in angle["note"]
    if turn == 0:
        assert elbo["value"] == pytest.approx(elbo["reference"], rel=1e-6) and elbo["passed"] and angle["passed"]
    else:
        assert elbo["passed"] is False and angle["passed"] is False


def test_the_decoder_angle_compares_only_the_directions_ppca_identifies(data):
    """At beta sigma^2 = 0.7 pPCA keeps one latent (lambda_1 ~ 1 > 0.7 > lambda_2 ~ 0.5): a trained decoder whose
    second, collapsed column has not shrunk to zero is at angle 0, and its first column turned by 20 degrees at 20."""
    vae = STUDY["vae"] | {"beta": 70.0}
    ref = reference(data, vae)
    assert ref["ppca_n_active"] == 1 and ref["ppca_eigen_gap"] >= controls.MIN_EIGEN_GAP
    W = references.ppca_optimum(data["x_train"], Z, vae["sigma"], vae["beta"])["W"]
    components = references.pca_reference(data["x_train"], data["x_test"], 3)["components"]
    leftover = W.copy()
    leftover[:, 1] = 0.3 * np.linalg.norm(W[:, 0]) * components[:, 2]
    assert controls.ppca_decoder_angle(leftover, ref) == pytest.approx(0.0, abs=1e-6)
    assert controls.decoder_angle(leftover, ref["components"]) > 80  # the whole column space: the leftover counts
    assert controls.ppca_decoder_angle(turned(leftover, 0, 20.0, components[:, 1]), ref) == pytest.approx(20.0)
    run = make_run("vae")
    run["vae"] = vae
    measured = {"status": "ok", "neg_elbo": ref["ppca_neg_elbo"], "decoder_angle": 0.0}
    angle = by_check(controls.control_rows(run, measured, ref))["linear_vae_subspace_angle"]
    assert angle["passed"] is True and "1 of 2 latents identified" in angle["note"]


def test_the_elbo_excess_does_not_move_with_the_likelihoods_constant(data):
    """Data and sigma scaled by c shift every -ELBO by d log c: the excess over pPCA, a share of pPCA's gain over no
    code, stays; 1 + (L - L*) / |L*| does not. And a pPCA that keeps no latent leaves no gain to take a share of."""
    rows = []
    for c in (1.0, 10.0):
        scaled = {split: data[split].double() * c for split in ("x_train", "x_test")}
        vae = STUDY["vae"] | {"sigma": 0.1 * c}
        ref = controls.reference(scaled["x_train"], scaled["x_test"], Z, vae)
        value = ref["ppca_neg_elbo"] + 0.01 * (ref["no_latent_neg_elbo"] - ref["ppca_neg_elbo"])
        (row,) = controls.control_rows(
            make_run("vae", "sym"), {"status": "ok", "neg_elbo": value, "elbo_samples": 1}, ref
        )
        rows.append(row)
    assert rows[1]["value"] == pytest.approx(rows[0]["value"] + 6 * math.log(10.0))
    assert rows[0]["ratio"] == pytest.approx(0.01) and rows[1]["ratio"] == pytest.approx(0.01)
    assert all(row["passed"] is True for row in rows)
    old = [(row["value"] - row["reference"]) / abs(row["reference"]) for row in rows]  # the former check's excess
    assert old[0] != pytest.approx(old[1], rel=0.1)
    none = reference(data, STUDY["vae"] | {"sigma": 10.0})
    assert none["ppca_n_active"] == 0
    (row,) = controls.control_rows(make_run("vae", "sym"), {"status": "ok", "neg_elbo": 0.0, "elbo_samples": 1}, none)
    assert row["applies"] is False and row["passed"] is None and "no scale" in row["note"]


def test_a_nonlinear_vae_is_compared_with_ppca_by_its_expected_elbo(data, device):
    run = make_run("vae", arch="sym", epochs=2)
    model, _ = trained(run, data, device)
    ref = reference(data)
    measured = ncontrols.measure(model, run, data["x_train"], data["x_test"], ref)
    (row,) = controls.control_rows(run, measured, ref)
    assert row["check"] == "vae_vs_ppca_elbo" and row["reference"] == pytest.approx(
        references.ppca_negative_elbo(data["x_train"], data["x_test"], Z, 0.1)["loss"]
    )
    assert row["applies"] and row["passed"] is False  # two epochs are far from pPCA


# ---------------------------------------------------------------- which checks, and their verdicts


def test_each_kind_of_net_gets_its_checks():
    assert controls.checks_for(make_run("ae", "enc")) == ["linear_decoder_pca_bound"]
    assert controls.checks_for(make_run("ae", "sym")) == ["nonlinear_ae_not_worse_than_pca"]
    assert "linear_decoder_pca_bound" in controls.checks_for(make_run("ae", "linear"))
    assert controls.checks_for(make_run("vae", "sym")) == ["vae_vs_ppca_elbo"]
    assert controls.checks_for(make_run("vae", "linear")) == ["linear_vae_ppca_elbo", "linear_vae_subspace_angle"]
    assert set(controls.CHECKS) == {
        c for k in ("ae", "vae") for a in STUDY["architectures"] for c in controls.checks_for(make_run(k, a))
    }


def test_a_linear_decoder_below_pca_on_the_train_split_is_flagged_as_a_bug(data):
    ref = reference(data)
    run = make_run("ae", "enc")
    fine = {"status": "ok", "test_mse": ref["pca_mse"] * 0.99, "train_mse": ref["pca_train_mse"] * 1.001}
    (row,) = controls.control_rows(run, fine, ref)
    assert row["passed"] is True and row["ratio"] == pytest.approx(0.99)  # below on test: chance, not a bug
    impossible = fine | {"train_mse": ref["pca_train_mse"] * 0.99}
    (row,) = controls.control_rows(run, impossible, ref)
    assert row["passed"] is False and "a bug" in row["note"]


def test_an_ill_defined_subspace_makes_the_angle_check_not_apply(data):
    ref = reference(data) | {"eigen_gap": 1.1}
    measured = {"status": "ok", "test_mse": ref["pca_mse"], "train_mse": ref["pca_train_mse"], "decoder_angle": 40.0}
    rows = by_check(controls.control_rows(make_run(), measured, ref))
    angle = rows["linear_ae_subspace_angle"]
    assert angle["applies"] is False and angle["passed"] is None and "eigen gap 1.1" in angle["note"]
    assert rows["linear_ae_pca_mse"]["passed"] is True


def test_bernoulli_vaes_and_diverged_runs_have_rows_without_a_verdict(data):
    ref = reference(data, vae=None)
    run = make_run("vae", "linear")
    run["vae"]["likelihood"] = "bernoulli"
    rows = controls.control_rows(run, {"status": "ok"}, ref)
    assert [r["check"] for r in rows] == ["linear_vae_ppca_elbo", "linear_vae_subspace_angle"]
    assert all(r["applies"] is False and r["passed"] is None and "bernoulli" in r["note"] for r in rows)
    rows = controls.control_rows(make_run(), {"status": "diverged", "error": "loss nan at epoch 3"}, ref)
    assert all(r["applies"] and r["passed"] is None and "epoch 3" in r["note"] for r in rows)
    assert math.isnan(ref["ppca_neg_elbo"])
    wide = controls.reference(data["x_train"], data["x_test"], 7, STUDY["vae"])  # z = 7 > 6 dimensions
    rows = controls.control_rows(make_run(), {"status": "ok"}, wide)
    assert all(not r["applies"] and r["passed"] is None and "wider than the data" in r["note"] for r in rows)
    assert math.isnan(controls.reference_row("synthetic", 7, wide)["pca_mse"])


# ---------------------------------------------------------------- the controls job and table


def test_the_controls_job_writes_every_run_and_the_table_carries_the_config(data, device, tmp_path):
    runs = [make_run("ae", arch, epochs=3) for arch in STUDY["architectures"]]
    runs += [make_run("vae", "linear", epochs=3), make_run("vae", "sym", epochs=3)]
    paths = []
    for i, run in enumerate(runs):
        run_dir = tmp_path / "runs" / run["run_id"]
        if i == 1:  # a run that diverged: its model.pt holds the error
            result = {"status": "diverged", "error": "training loss is nan at epoch 2", "history": [], "in_dim": 6}
        else:
            result = training.train(run, data, device)
        jobs.save_run(run, result, data, run_dir, 2, {})
        paths.append(str(run_dir / "model.pt"))
    torch.save(data, tmp_path / "data.pt")
    checks, refs = tmp_path / "checks.csv", tmp_path / "references.csv"
    ncontrols.controls_dataset(runs, paths, str(tmp_path / "data.pt"), str(checks), str(refs), threads=1)

    table = aggregate.controls_table(runs, [str(checks)])
    config_cols = list(config.config_columns(runs[0]))
    assert list(table.columns) == config_cols + controls.COLUMNS
    assert set(table["run_id"]) == {run["run_id"] for run in runs}
    assert table.groupby("run_id").size().to_dict()[runs[0]["run_id"]] == 3  # the linear AE's three checks
    diverged = table[table["run_id"] == runs[1]["run_id"]]
    assert diverged["passed"].isna().all() and diverged["note"].str.contains("diverged").all()
    assert set(table["passed"].dropna()) <= {True, False}
    references_table = pd.read_csv(refs)
    assert list(references_table.columns) == controls.REFERENCE_COLUMNS and len(references_table) == 1
    assert references_table["pca_mse"].iloc[0] == pytest.approx(reference(data)["pca_mse"])

    # the PCA-z reference beside every run of the training tables, and each run's convergence
    metrics = aggregate.train_metrics_table(runs, [p.replace("model.pt", "train_metrics.json") for p in paths], [refs])
    assert {"convergence", "pca_mse"} <= set(metrics.columns)
    assert (metrics["pca_mse"] == references_table["pca_mse"].iloc[0]).all()
    ok = metrics["status"] == "ok"
    assert metrics.loc[ok, "convergence"].notna().all() and metrics.loc[~ok, "convergence"].isna().all()


def test_convergence_is_the_relative_change_over_the_last_tenth_of_epochs():
    losses = [10.0 - i for i in range(20)]  # epochs 1..20: loss[18] = -7, loss[20] = -9
    assert controls.convergence(losses) == pytest.approx((-7.0 - -9.0) / 9.0)
    assert controls.convergence([4.0, 2.0, 1.0]) == pytest.approx(1.0)  # ceil(0.3) = 1 epoch back
    assert controls.convergence([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert math.isnan(controls.convergence([3.0]))
    assert math.isnan(controls.convergence([3.0, float("nan")]))


# ---------------------------------------------------------------- the activation an architecture fixes


def test_an_architecture_that_fixes_its_activation_is_trained_once_with_it(tiny_config):
    cfg = copy.deepcopy(tiny_config)
    cfg["activations"] = ["relu", "tanh"]
    cfg["architectures"]["lin"] = {"family": "linear", "encoder": [12], "decoder": [12], "activation": "linear"}
    cfg["truncation"] = {"select": {"activations": ["linear"]}}
    config.validate(cfg, SCHEMA)  # an activation only an architecture fixes may be selected
    runs = config.grid(cfg)
    lin = [run for run in runs if run["arch"] == "lin"]
    others = [run for run in runs if run["arch"] != "lin"]
    assert {run["activation"] for run in lin} == {"linear"}
    per_cell = len(cfg["datasets"]) * len(cfg["model_kinds"]) * len(cfg["bottlenecks"]) * len(cfg["seeds"])
    assert len(lin) == per_cell and len(others) == 3 * 2 * per_cell
    assert "digits/ae/lin/z3/linear/s0" in {run["run_id"] for run in lin}
    assert {run["activation"] for run in others} == {"relu", "tanh"}
    assert config.all_activations(cfg) == ["relu", "tanh", "linear"]
    with pytest.raises(config.ConfigError, match="fixes activation 'linear'"):
        config.resolve_run(cfg, "digits", "ae", "lin", 3, "relu", 0)
    cfg["architectures"]["lin"]["activation"] = "sigmoid"
    with pytest.raises(config.ConfigError, match="architectures.lin.activation"):
        config.validate(cfg, SCHEMA)


def test_the_default_study_has_the_linear_net_and_matched_asymmetric_families():
    cfg = config.validate(load_yaml(REPO / "config.yaml"), SCHEMA)
    archs = cfg["architectures"]
    assert archs["linear"] == {"family": "linear", "encoder": [42], "decoder": [42], "activation": "linear"}
    enc, dec = archs["enc-heavy-matched"], archs["dec-heavy-matched"]
    assert enc["encoder"] and enc["decoder"] and dec["encoder"] and dec["decoder"]  # hidden layers on both sides
    for z in cfg["bottlenecks"]:
        sizes = {}
        for name in ("enc-heavy-matched", "dec-heavy-matched"):
            run = next(r for r in config.grid(cfg) if r["arch"] == name and r["bottleneck"] == z)
            sizes[name] = sum(p.numel() for p in build_model(run, 64).parameters())
        # mirrors: the same weights; only the biases of the mirrored hidden layers differ
        assert abs(sizes["enc-heavy-matched"] - sizes["dec-heavy-matched"]) <= 48 + 32
    linear_runs = [r for r in config.grid(cfg) if r["arch"] == "linear"]
    assert {r["activation"] for r in linear_runs} == {"linear"} and {r["kind"] for r in linear_runs} == {"ae", "vae"}
    assert {r["dataset"] for r in linear_runs} == set(cfg["datasets"])
