"""The workflow end to end on the tiny study: every output, reruns, determinism, lint."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_CONFIG, load_yaml, snakemake

RUN_FILES = ["config.json", "model.pt", "train_log.csv", "train_metrics.json", "reconstructions.csv", "provenance.json"]


def planned_jobs(workdir, *args, configfile=TINY_CONFIG) -> dict[str, int]:
    """Rule name -> job count of a dry run."""
    proc = snakemake(workdir, "-n", *args, configfile=configfile)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("\n\n")[0]
    jobs = {}
    for line in table.splitlines()[3:]:
        name, count = line.split()
        if name != "total":
            jobs[name] = int(count)
    return jobs


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
    assert not list((tiny_study / "results/runs").rglob("*.resume.pt")), "finished runs leave no resume checkpoint"


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


def test_provenance_is_recorded_apart_from_the_tables(tiny_study):
    rid = pd.read_csv(tiny_study / "results/tables/runs.csv")["run_id"].iloc[0]
    prov = json.loads((tiny_study / "results/runs" / rid / "provenance.json").read_text())
    for key in ["git_commit", "config_hash", "data_sha256", "torch", "numpy", "device", "threads", "hostname"]:
        assert key in prov, key
    data_info = json.loads((tiny_study / f"results/data/{rid.split('/')[0]}.json").read_text())
    assert prov["data_sha256"] == data_info["sha256"]
    for table in (tiny_study / "results/tables").glob("*.csv"):
        text = table.read_text()
        assert prov["hostname"] not in text.split("\n")[0]


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
    path = changed_config(tmp_path, lambda c: c["figures"].update(dpi=61))
    jobs = planned_jobs(tiny_study, configfile=path)
    assert jobs and all(rule.startswith(("figure", "paper")) or rule == "all" for rule in jobs), jobs


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
