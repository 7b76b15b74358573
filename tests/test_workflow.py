"""The workflow end to end on the tiny study: every output, reruns, determinism, lint."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from aedissect.datasets import MNIST1D_FACTORS, SHAPES_FACTORS
from conftest import OFFLINE_CONFIG, REPO, TINY_CONFIG, load_yaml, planned_jobs, snakemake

RUN_FILES = ["config.json", "model.pt", "train_log.csv", "train_metrics.json", "reconstructions.csv", "provenance.json"]


def test_every_run_has_its_files(tiny_study, tiny_config):
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    n_runs = (
        len(tiny_config["datasets"])
        * len(tiny_config["model_kinds"])
        * len(tiny_config["architectures"])
        * len(tiny_config["bottlenecks"])
        * len(tiny_config["activations"])
        * len(tiny_config["seeds"])
    )
    assert len(runs) == n_runs
    for rid in runs["run_id"]:
        for name in RUN_FILES:
            path = tiny_study / "results/runs" / rid / name
            assert path.stat().st_size > 0, path
        assert json.loads((tiny_study / "results/runs" / rid / "config.json").read_text())["run_id"] == rid
    assert not list((tiny_study / "results").rglob("*resume*")), "finished jobs leave no resume checkpoint"


def test_every_final_table_and_figure_exists_and_is_not_empty(tiny_study):
    proc = snakemake(tiny_study, "-n", "--forceall")
    targets = proc.stdout.split("rule all:")[1].split("\n")[1]
    files = targets.split("input:")[1].split(",")
    assert len(files) >= 14
    for name in files:
        path = tiny_study / name.strip()
        assert path.stat().st_size > 0, path
    for table in (tiny_study / "results/tables").glob("*.csv"):
        assert len(pd.read_csv(table)) > 0, table


def test_tables_are_tidy_and_carry_the_config(tiny_study):
    metrics = pd.read_csv(tiny_study / "results/tables/train_metrics.csv")
    for column in [
        "run_id",
        "dataset",
        "kind",
        "arch",
        "family",
        "bottleneck",
        "activation",
        "seed",
        "epochs",
        "lr",
        "config_hash",
        "status",
        "test_mse",
        "psnr",
    ]:
        assert column in metrics.columns
    assert (metrics["status"] == "ok").all()
    vae = metrics[metrics["kind"] == "vae"]
    assert vae["neg_elbo"].notna().all() and vae["active_units"].between(0, 3).all()
    assert metrics[metrics["kind"] == "ae"]["neg_elbo"].isna().all()
    summary = pd.read_csv(tiny_study / "results/tables/train_summary.csv")
    assert (summary["n"] == 2).all()
    row = summary[(summary["metric"] == "test_mse")].iloc[0]
    cell = metrics[
        (metrics["dataset"] == row["dataset"]) & (metrics["kind"] == row["kind"]) & (metrics["arch"] == row["arch"])
    ]["test_mse"]
    assert row["mean"] == pytest.approx(cell.mean())
    assert row["ci95_low"] < row["mean"] < row["ci95_high"]
    curves = pd.read_csv(tiny_study / "results/tables/train_curves.csv")
    assert set(curves["split"]) == {"train", "test"} and curves["epoch"].max() == 3


def test_every_run_is_checked_against_its_closed_form_optimum(tiny_study):
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    controls = pd.read_csv(tiny_study / "results/tables/controls.csv")
    own = ["check", "value", "reference", "ratio", "threshold", "passed", "applies", "note"]
    assert list(controls.columns) == [*runs.columns, *own]
    assert set(controls["run_id"]) == set(runs["run_id"])
    ae, vae = controls[controls["kind"] == "ae"], controls[controls["kind"] == "vae"]
    assert set(ae.loc[ae["arch"] == "enc-heavy", "check"]) == {"linear_decoder_pca_bound"}  # its decoder is linear
    assert set(ae.loc[ae["arch"] != "enc-heavy", "check"]) == {"nonlinear_ae_not_worse_than_pca"}
    assert ae["applies"].all() and ae["passed"].notna().all()
    assert ae["ratio"].to_numpy() == pytest.approx((ae["value"] / ae["reference"]).to_numpy(), rel=1e-8)
    # the tiny study's VAEs are Bernoulli: no closed-form optimum, rows without a verdict that say why
    assert (~vae["applies"]).all() and vae["passed"].isna().all() and vae["note"].str.contains("bernoulli").all()
    metrics = pd.read_csv(tiny_study / "results/tables/train_metrics.csv")
    pca = metrics.groupby(["dataset", "bottleneck"])["pca_mse"].nunique()
    assert (pca == 1).all() and metrics["convergence"].notna().all()


def test_provenance_is_recorded_apart_from_the_tables(tiny_study):
    rid = pd.read_csv(tiny_study / "results/tables/runs.csv")["run_id"].iloc[0]
    prov = json.loads((tiny_study / "results/runs" / rid / "provenance.json").read_text())
    for key in ["git_commit", "config_hash", "data_sha256", "torch", "numpy", "device", "threads", "hostname"]:
        assert key in prov, key
    data_info = json.loads((tiny_study / f"results/data/{rid.split('/')[0]}.json").read_text())
    assert prov["data_sha256"] == data_info["sha256"]
    tables = list((tiny_study / "results/tables").glob("*.csv")) + list((tiny_study / "results/paper").glob("*.csv"))
    assert tables
    for table in tables:  # no field of any row, nor a column name, holds the host, the commit or a timing
        frame = pd.read_csv(table, dtype=str, keep_default_na=False)
        fields = set(frame.columns) | set(frame.to_numpy().ravel())
        assert not fields & {prov["hostname"], prov["git_commit"], "hostname", "git_commit", "train_seconds"}, table


def test_second_run_has_nothing_to_do(tiny_study):
    assert planned_jobs(tiny_study) == {}


def test_tables_are_byte_identical_across_two_runs(tiny_study, tiny_study_again):
    tables = sorted(p.relative_to(tiny_study) for p in (tiny_study / "results/tables").rglob("*") if p.is_file())
    assert tables
    for rel in tables:
        assert (tiny_study / rel).read_bytes() == (tiny_study_again / rel).read_bytes(), rel


def changed_config(tmp_path, mutate):
    cfg = load_yaml(TINY_CONFIG)
    mutate(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_changing_a_figure_setting_reruns_figures_only(tiny_study, tmp_path):
    path = changed_config(tmp_path, lambda c: c["figures"].update(dpi=61, n_examples=2))
    jobs = planned_jobs(tiny_study, configfile=path)
    assert jobs and all(rule.startswith(("figure", "paper")) or rule == "all" for rule in jobs), jobs


def test_switching_tensorboard_on_reruns_nothing(tiny_study, tmp_path):
    """logging.tensorboard is in no rule's params (the torch scripts read it from the config): no job reruns."""
    path = changed_config(tmp_path, lambda c: c.update(logging={"tensorboard": True}))
    assert planned_jobs(tiny_study, configfile=path) == {}


def test_changing_one_training_setting_reruns_training_and_what_depends_on_it(tiny_study, tmp_path):
    path = changed_config(tmp_path, lambda c: c["vae"].update(beta=0.5))
    jobs = planned_jobs(tiny_study, configfile=path)
    tiny = load_yaml(TINY_CONFIG)
    vae_cells = len(tiny["datasets"]) * len(tiny["architectures"]) * len(tiny["bottlenecks"]) * len(tiny["activations"])
    assert jobs["train"] == vae_cells  # the AE cells do not depend on beta
    assert "prepare_data" not in jobs and "runs_table" in jobs  # runs.csv carries beta


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr
    # ruff's first-party detection depends on the environment unless pyproject.toml names the packages
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the rule files in snakefmt's form, with the directive order of pyproject.toml [tool.snakefmt]
    snakefmt = [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"]
    proc = subprocess.run(snakefmt, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layer_profiles_cover_every_run_and_cut(tiny_study):
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    profiles = pd.read_csv(tiny_study / "results/tables/layer_profiles.csv")
    assert set(profiles["run_id"]) == set(runs["run_id"])
    # every run profiled trained and at its initial weights; the checks below are of the trained models
    assert (profiles.groupby("run_id")["state"].apply(set) == {"trained", "init"}).all()
    profiles = profiles[profiles["state"] == "trained"]
    for rid, profile in profiles.groupby("run_id"):
        assert (tiny_study / "results/runs" / rid / "layer_profile.csv").stat().st_size > 0
        cuts = sorted(profile["cut"].unique())
        assert cuts == list(range(len(cuts)))
        per_metric = profile[profile["side"] == "bottleneck"].groupby("metric")["cut"].nunique()
        assert (per_metric == 1).all()
        bottleneck = profile[(profile["side"] == "bottleneck") & (profile["metric"] == "cka_bottleneck")]
        assert bottleneck["value"].iloc[0] == pytest.approx(1.0)
        assert profile[(profile["cut"] == 0) & (profile["metric"] == "linear_r2")]["value"].iloc[0] > 0.999
    metrics_by_dataset = profiles.groupby("dataset")["metric"].unique()
    assert "label_accuracy" in metrics_by_dataset["digits"] and "label_accuracy" not in metrics_by_dataset["factors"]
    assert (
        "factor_r2_linear" in metrics_by_dataset["factors"] and "factor_r2_linear" not in metrics_by_dataset["digits"]
    )


def test_encoding_locus_is_relative_to_the_bottleneck(tiny_study):
    locus = pd.read_csv(tiny_study / "results/tables/encoding_locus.csv")
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    assert set(locus["run_id"]) == set(runs["run_id"])
    base = {"twonn_min", "pr_min", "cka_bottleneck_max"}
    for rid, loci in locus.groupby("run_id")["locus"].apply(set).items():
        # the factor loci only where the data have known factors
        assert loci == (base | {"factor_r2_95", "factor_r2_max"} if rid.startswith("factors/") else base), rid
    assert (locus["offset"] == locus["cut"] - locus["bottleneck_cut"]).all()


def test_intervention_tables_hold_their_invariants(tiny_study):
    tables = tiny_study / "results/tables"
    for name in [
        "freeze",
        "freeze_summary",
        "encoder_share",
        "encoder_share_summary",
        "share_vs_parameters",
        "layer_criticality",
        "layer_criticality_summary",
        "stitching",
        "stitching_summary",
    ]:
        assert (tables / f"{name}.csv").stat().st_size > 0, name
    stitching = pd.read_csv(tables / "stitching.csv")
    self_identity = stitching[(stitching["pair_type"] == "self") & (stitching["stitch"] == "identity")]
    assert len(self_identity) > 0 and (self_identity["penalty"] == 0).all()
    criticality = pd.read_csv(tables / "layer_criticality.csv")
    assert (criticality[criticality["intervention"] == "trained"]["ratio"] == 1).all()
    # the normalised damage: 0 for the trained weights wherever the model beats the mean predictor, NaN elsewhere
    trained = criticality[criticality["intervention"] == "trained"]
    better = trained["trained_test_mse"] < trained["mean_predictor_test_mse"]
    assert (trained.loc[better, "damage"] == 0).all() and trained.loc[~better, "damage"].isna().all()
    assert (criticality.groupby(["run_id", "intervention"])["params"].sum() > 0).all()
    freeze = pd.read_csv(tables / "freeze.csv")
    assert set(freeze[freeze["freeze"] == "none"]["run_id"]) == set(freeze["run_id"])
    aliased = freeze[freeze["same_as"].notna()]
    for row in aliased.itertuples():
        original = freeze[(freeze["run_id"] == row.run_id) & (freeze["freeze"] == row.same_as)]
        assert original["test_loss"].iloc[0] == row.test_loss
    # a frozen decoder whose output bias trains fits at least the data's mean: never worse than the textbook freeze
    by_spec = freeze.pivot_table(index="run_id", columns="freeze", values="test_mse")
    assert (by_spec["decoder+bias"] < by_spec["decoder"]).all()
    assert set(freeze.loc[freeze["freeze"] == "decoder", "output_bias"]) == {"frozen"}
    assert set(freeze.loc[freeze["freeze"] != "decoder", "output_bias"]) >= {"trained"}
    share = pd.read_csv(tables / "encoder_share.csv")
    textbook = share[share["design"] == "textbook"]
    assert set(textbook["output_bias"]) == {"trained", "frozen"} and set(textbook["method"]) == {"leave_one_out"}
    # the symmetric design: a Shapley share beside its leave-one-out one, phi_enc + phi_dec = L_both - L_full
    shapley = share[(share["design"] == "symmetric") & (share["method"] == "shapley")]
    assert len(shapley) > 0 and shapley["output_bias"].isna().all()
    efficiency = shapley["phi_enc"] + shapley["phi_dec"] - (shapley["loss_both_frozen"] - shapley["loss_full"])
    assert (efficiency.abs() <= 1e-9 * shapley["loss_both_frozen"].abs()).all()
    assert textbook.groupby(["run_id", "metric"]).size().eq(2).all()
    # the share against the encoder's parameter fraction: a line per data set, kind and share, over architectures
    lines = pd.read_csv(tables / "share_vs_parameters.csv")
    slopes = lines[lines["estimate"] == "slope"]
    assert len(slopes) == len(share.drop_duplicates(["dataset", "kind", "metric", "method", "design", "output_bias"]))
    assert (slopes["n_archs"] <= share["arch"].nunique()).all()
    fitted = (slopes["n_archs"] >= 2) & (slopes["n_runs"] >= 3)
    assert fitted.any() and slopes.loc[fitted, "value"].notna().all()


def test_offline_data_sets_are_profiled_for_their_factors(offline_study):
    config = load_yaml(OFFLINE_CONFIG)
    runs = pd.read_csv(offline_study / "results/tables/runs.csv")
    assert set(runs["dataset"]) == {"shapes", "mnist1d"} and len(runs) == 2 * len(config["seeds"])
    profiles = pd.read_csv(offline_study / "results/tables/layer_profiles.csv")
    profiles = profiles[profiles["state"] == "trained"]
    for dataset, names in (("shapes", SHAPES_FACTORS), ("mnist1d", MNIST1D_FACTORS)):
        info = json.loads((offline_study / f"results/data/{dataset}.json").read_text())
        assert info["factor_names"] == list(names)
        metrics = set(profiles.loc[profiles["dataset"] == dataset, "metric"])
        probes = {f"factor{k}_r2_{how}" for k in range(len(names)) for how in ("linear", "nonlinear")}
        assert probes | {"factor_r2_linear", "factor_r2_nonlinear", "label_accuracy"} <= metrics, dataset
        # every trained cut carries the linear factor probe, each factor a finite R²
        factor = profiles[(profiles["dataset"] == dataset) & (profiles["metric"] == "factor0_r2_linear")]
        assert len(factor) == profiles[profiles["dataset"] == dataset].groupby(["run_id", "cut"]).ngroups
        assert factor["value"].notna().all()
    locus = pd.read_csv(offline_study / "results/tables/encoding_locus.csv")
    factor_loci = locus[locus["locus"].isin(["factor_r2_95", "factor_r2_max"])]
    assert len(factor_loci) == 2 * len(runs) and set(factor_loci["run_id"]) == set(runs["run_id"])
    assert (factor_loci["offset"] == factor_loci["cut"] - factor_loci["bottleneck_cut"]).all()


def test_offline_findings_report_the_factor_locus_per_family(offline_study):
    locus = pd.read_csv(offline_study / "results/tables/encoding_locus.csv")
    table = pd.read_csv(offline_study / "results/paper/factor_locus.csv")
    assert set(zip(table["dataset"], table["locus"], strict=True)) == {
        (d, name) for d in ("shapes", "mnist1d") for name in ("factor_r2_95", "factor_r2_max")
    }
    for row in table.to_dict("records"):  # the counts and the mean of encoding_locus.csv's offsets
        rows = locus[(locus["locus"] == row["locus"]) & locus["run_id"].str.startswith(f"{row['dataset']}/")]
        assert row["n_runs"] == len(rows) and row["n_encoder"] == (rows["offset"] < 0).sum()
        assert row["n_encoder"] + row["n_bottleneck"] + row["n_decoder"] == row["n_runs"]
        assert row["mean"] == pytest.approx(rows["offset"].mean())  # one architecture and bottleneck: a run a seed
    text = (offline_study / "results/paper/findings.md").read_text()
    section = text.split("## Where the factors are encoded: the factor locus")[1].split("\n## ")[0]
    for dataset in ("shapes", "mnist1d"):
        block = section.split(f"### {dataset}, AE")[1].split("###")[0]
        assert "- **symmetric**, 95% of the maximal linear factor R² first reached (`factor_r2_95`): offset " in block
        assert (
            "- **symmetric**, maximal linear factor R² (`factor_r2_max`): offset " in block
            and "in the encoder" in block
        )
    assert text.index("the factor locus") < text.index("## How the verdicts are chosen")
