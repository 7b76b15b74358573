"""The front door: aedissect.profile, the aedissect command (profile, studies, check), the SLURM runtime helper."""

import copy
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

import aedissect
from aedissect import cli, config, slurm_resources
from aedissect.analysis import truncation_tables
from aedissect.nets import jobs, probes, training
from conftest import REPO, TINY_CONFIG, load_yaml

FAST = {"probe_size": 100, "max_points": 100, "nonlinear_epochs": 2, "twonn_subsamples": 0}


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model.pt as the train job writes it: digits, two epochs."""
    from aedissect.nets import data

    study = config.validate(load_yaml(TINY_CONFIG))
    run = config.resolve_run(study, "digits", "ae", "sym", study["bottlenecks"][0], "relu", 0)
    run["training"]["epochs"] = 2
    tensors = data.build("digits", study["data"])
    result = training.train(run, tensors, training.setup_torch(1, "cpu"))
    run_dir = tmp_path_factory.mktemp("run")
    jobs.save_run(run, result, tensors, run_dir, 2, {})
    return run_dir / "model.pt", tensors


def test_profile_takes_a_model_or_its_file_and_leaves_the_global_rng_alone(digits_model):
    path, tensors = digits_model
    model, _ = aedissect.load_model(str(path))
    state = torch.random.get_rng_state()
    from_model = aedissect.profile(model, tensors["x_test"], tensors["y_test"], **FAST)
    assert torch.equal(torch.random.get_rng_state(), state)
    from_path = aedissect.profile(path, tensors["x_test"], tensors["y_test"], **FAST)
    pd.testing.assert_frame_equal(from_model, from_path)
    assert list(from_model.columns) == truncation_tables.PROFILE_COLUMNS
    assert sorted(from_model["cut"].unique()) == list(range(model.n_layers + 1))
    assert {"participation_ratio", "linear_r2", "nonlinear_r2", "label_accuracy"} <= set(from_model["metric"])


def test_profile_options_are_the_schema_s_and_a_bad_one_is_named(digits_model):
    path, tensors = digits_model
    with pytest.raises(config.ConfigError, match="truncation.probe_size"):
        aedissect.profile(path, tensors["x_test"], probe_size=3)
    with pytest.raises(config.ConfigError, match="bogus"):
        aedissect.profile(path, tensors["x_test"], bogus=1)
    defaults = config.section("truncation")
    assert defaults["nonlinear_epochs"] == 30 and defaults["probe_size"] == 1000


def test_profile_matches_the_truncate_job_on_the_same_split(digits_model):
    path, tensors = digits_model
    options = config.section("truncation", FAST)
    run = {"run_id": "m", "seed": 0}
    expected, _ = probes.profile_cell([run], [str(path)], tensors, options)
    got = aedissect.profile(
        path, tensors["x_test"], tensors["y_test"], x_fit=tensors["x_train"], y_fit=tensors["y_train"], name="m", **FAST
    )
    # the truncate job also profiles the model's initial weights (state init); the front door only the model
    trained = expected["m"][expected["m"]["state"] == "trained"].reset_index(drop=True)
    assert set(expected["m"]["state"]) == {"trained", "init"} and set(got["state"]) == {"trained"}
    pd.testing.assert_frame_equal(got, trained)


def test_cli_profile_writes_the_csv_of_the_model_s_own_data_set(digits_model, tmp_path, capsys):
    path, tensors = digits_model
    out = tmp_path / "profile.csv"
    options = [f"--option={k}={v}" for k, v in FAST.items()]
    assert cli.main(["profile", str(path), "--config", str(TINY_CONFIG), "--out", str(out), *options]) == 0
    frame = pd.read_csv(out)
    expected = aedissect.profile(
        path, tensors["x_test"], tensors["y_test"], x_fit=tensors["x_train"], y_fit=tensors["y_train"], **FAST
    )
    assert frame["run_id"].unique().tolist() == ["digits/ae/sym/z3/relu/s0"]
    assert frame["value"].tolist() == pytest.approx(expected["value"].tolist(), rel=1e-9, nan_ok=True)
    # wrong width: factors has 12 features, the model 64
    assert cli.main(["profile", str(path), "--config", str(TINY_CONFIG), "--data", "factors"]) == 1
    assert "64" in capsys.readouterr().err


def test_cli_profile_names_a_missing_file(tmp_path, capsys):
    assert cli.main(["profile", str(tmp_path / "nope.pt")]) == 1
    assert "nope.pt" in capsys.readouterr().err


def test_cli_check_names_the_file_and_key(tmp_path, capsys):
    assert cli.main(["check", str(REPO / "config.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
    bad = load_yaml(REPO / "config.yaml")
    bad["training"]["lr"] = "fast"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "config key training.lr" in err
    path.write_text("datasets: [digits\n")
    assert cli.main(["check", str(path)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_cli_check_reads_1e_2_as_a_number_and_names_the_nearest_key(tmp_path, capsys):
    text = TINY_CONFIG.read_text()
    path = tmp_path / "study.yaml"
    path.write_text(re.sub(r"(?m)^  lr: .*$", "  lr: 1e-2", text))
    assert cli.main(["check", str(path)]) == 0, capsys.readouterr().err
    assert config.grid(cli.read_config(path))[0]["training"]["lr"] == 0.01
    path.write_text(re.sub(r"(?m)^bottlenecks:", "bottleneck:", text))
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "study.yaml" in err and "unknown key `bottleneck` at the top level: did you mean `bottlenecks`?" in err
    assert "'bottlenecks' is a required property" not in err


def test_cli_studies_lists_every_study_with_its_size(capsys):
    assert cli.main(["studies", "--dir", str(REPO / "studies")]) == 0
    out = capsys.readouterr().out
    for study in (REPO / "studies").glob("*.yaml"):
        runs = len(config.grid(config.validate(load_yaml(study))))
        assert re.search(rf"{study.name}\s.*\s{runs}\s", out), out


def run_cli(*args, cwd=REPO, code=None) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO / "workflow")}
    command = ["-c", code] if code else ["-m", "aedissect", *args]
    return subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True, text=True)


def test_cli_studies_from_a_subfolder_lists_config_yaml_and_every_study_with_jobs_epochs_and_time():
    proc = run_cli("studies", cwd=REPO / "docs")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:] if line.endswith(("s", "min"))}
    expected = ["config.yaml", *(f"studies/{p.name}" for p in sorted((REPO / "studies").glob("*.yaml")))]
    assert list(rows) == expected, proc.stdout
    for name, cells in rows.items():
        study = config.validate(load_yaml(REPO / name))
        work = slurm_resources.job_epochs(study)
        jobs = sum(len(per_job) for per_job in work.values())
        epochs = sum(sum(per_job.values()) for per_job in work.values())
        assert cells[2:5] == [str(len(config.grid(study))), str(jobs), str(epochs)], name
        assert re.fullmatch(r"\d+ (s|min \d+ s|h \d\d min)", " ".join(cells[5:])), cells
    assert "docs/measured.json" in proc.stdout and "commit" in proc.stdout


def test_training_time_estimate_is_the_cost_model_summed_over_the_jobs():
    """An independent sum: every run's own epochs (train and freeze variants counted by job_epochs) at a cost of
    a + b x MACs per sample; with b = 0, every model-epoch costs a x its training samples."""
    study = config.validate(load_yaml(REPO / "config.yaml"))
    epochs_per_dataset = {}
    for rule_jobs in slurm_resources.job_epochs(study).values():
        for job, epochs in rule_jobs.items():
            epochs_per_dataset[job.split("/")[0]] = epochs_per_dataset.get(job.split("/")[0], 0) + epochs
    flat = {"ae": (2e-6, 0.0), "vae": (2e-6, 0.0)}
    expected = sum(2e-6 * epochs * {"digits": 1437, "factors": 3200}[d] for d, epochs in epochs_per_dataset.items())
    assert slurm_resources.training_seconds(study, flat) == pytest.approx(expected)
    # per multiply-add: a bigger net costs more, in proportion
    per_mac = {"ae": (0.0, 1e-9), "vae": (0.0, 1e-9)}
    wider = copy.deepcopy(study)
    for arch in wider["architectures"].values():
        arch["encoder"] = [2 * w for w in arch["encoder"]]
    assert slurm_resources.training_seconds(wider, per_mac) > slurm_resources.training_seconds(study, per_mac)


def test_cli_help_is_plain_text():
    top = cli.parser()
    texts = [top.format_help()]
    texts += [sub.format_help() for action in top._subparsers._group_actions for sub in action.choices.values()]
    for text in texts:
        assert "``" not in text and ":func:" not in text, text


def test_cli_reports_a_missing_model_file_before_importing_torch(tmp_path):
    code = (
        "import sys; from aedissect import cli; "
        f"rc = cli.main(['profile', {str(tmp_path / 'nope.pt')!r}]); "
        "assert rc == 1 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    proc = run_cli(code=code)
    assert proc.returncode == 0, proc.stderr
    assert "aedissect profile: model file " in proc.stderr and "nope.pt: no such file" in proc.stderr


def test_cli_errors_say_what_they_are_about(tmp_path, digits_model, capsys):
    path, _ = digits_model
    assert cli.main(["profile", str(path), "--option", "nonlinear_epoch=5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aedissect profile: --option: invalid truncation: options:") and "study config" not in err
    assert "did you mean `nonlinear_epochs`?" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [digits]\nbottleneck: [3]\n")
    assert cli.main(["profile", str(path), "--config", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"aedissect profile: --config {bad}: invalid study config")
    assert cli.main(["check", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"aedissect check: study {bad}: invalid study config")


def test_python_m_aedissect_runs_the_command():
    env = os.environ | {"PYTHONPATH": str(REPO / "workflow")}
    proc = subprocess.run(
        [sys.executable, "-m", "aedissect", "check", "config.yaml"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "config.yaml: ok" in proc.stdout, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "aedissect", "check", "missing.yaml"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "missing.yaml" in proc.stderr


def test_package_import_needs_no_torch():
    code = "import sys, aedissect, aedissect.config; assert 'torch' not in sys.modules and 'pandas' not in sys.modules"
    env = os.environ | {"PYTHONPATH": str(REPO / "workflow")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_slurm_profile_runtimes_are_the_helper_s_and_grow_with_each_attempt():
    profile = load_yaml(REPO / "profiles" / "slurm" / "config.yaml")["set-resources"]
    suggested = yaml.safe_load(slurm_resources.suggestion(str(REPO / "studies" / "mnist.yaml"), 4.6))
    for rule, resources in suggested["set-resources"].items():
        assert profile[rule]["runtime"] == resources["runtime"], rule
    for rule, resources in profile.items():
        first, second = (eval(resources["runtime"], {"attempt": n}) for n in (1, 2))
        assert second == 2 * first > 0, rule


def test_slurm_work_counts_each_rule_s_largest_job():
    study = config.validate(load_yaml(REPO / "studies" / "mnist.yaml"))
    work = slurm_resources.model_epochs(study)
    assert work["train"] == len(study["seeds"]) * study["training"]["epochs"]
    assert work["criticality"] % study["interventions"]["criticality"]["retrain_epochs"] == 0
    assert slurm_resources.runtime_minutes(1, 1.0) == slurm_resources.MINIMUM
