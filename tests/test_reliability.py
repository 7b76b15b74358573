"""Killed runs resume, diverged runs are marked, two instances do not collide, untrusted files do not execute,
writes are atomic."""

import base64
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aedissect import config, io
from aedissect.nets import training
from aedissect.nets.models import load_model
from conftest import REPO, SNAKEMAKE, load_yaml, planned_jobs, snakemake

KILL_CONFIG = REPO / "tests" / "kill_config.yaml"
DIVERGE_CONFIG = REPO / "tests" / "diverge_config.yaml"
RUN_DIR = "results/runs/factors/ae/sym/z3/relu"
TARGET = "results/tables/train_metrics.csv"  # the training stage; the later stages are covered by test_workflow


def start_snakemake(workdir: Path) -> subprocess.Popen:
    cmd = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(KILL_CONFIG),
        "--cores",
        "1",
        TARGET,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "snakemake ended before the checkpoint appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_pipeline_resumes_bitwise_and_a_second_instance_is_refused(tmp_path):
    workdir = tmp_path / "wd"
    proc = start_snakemake(workdir)
    checkpoint = workdir / RUN_DIR / ".resume" / "s0.pt"
    try:
        wait_for(checkpoint, proc)
        second = snakemake(workdir, "--cores", "1", TARGET, configfile=KILL_CONFIG, check=False)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout + second.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (workdir / RUN_DIR / "s0/model.pt").exists(), "the training was meant to be killed in flight"
    killed_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= killed_at < 150

    rerun = snakemake(workdir, "--cores", "1", TARGET, configfile=KILL_CONFIG)
    assert "no longer running" in rerun.stdout + rerun.stderr  # the stale lock of the killed run was cleared
    train_log = (workdir / "results/logs/train/factors/ae/sym/z3/relu.log").read_text()
    assert "resuming from" in train_log
    assert not checkpoint.exists()
    assert "Nothing to be done" in snakemake(workdir, "-n", TARGET, configfile=KILL_CONFIG).stdout

    # the same run, uninterrupted, in this process
    study = config.validate(load_yaml(KILL_CONFIG), REPO / "workflow/schemas/config.schema.yaml")
    run = config.grid(study)[0]
    from aedissect.nets.data import load

    reference = training.train(run, load(workdir / "results/data/factors.pt"), training.setup_torch(1, "cpu"))
    resumed, _ = load_model(workdir / RUN_DIR / "s0/model.pt")
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, reference["state"][key]), key


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["AEDISSECT_EXPLOIT_MARKER"]),))


def test_crafted_pickles_are_refused(tmp_path, monkeypatch, caplog):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("AEDISSECT_EXPLOIT_MARKER", str(marker))
    evil = tmp_path / "model.pt"
    torch.save({"config": Exploit()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        load_model(evil)
    assert not marker.exists()
    run = {"training": {}, "run_id": "x"}
    assert training.load_resume(evil, config.config_hash(run)) is None  # unusable: logged, removed, starts over
    assert not marker.exists() and not evil.exists()
    assert "unusable" in caplog.text


def test_a_path_traversal_run_id_never_reaches_the_file_system(tmp_path):
    with pytest.raises(config.ConfigError):
        config.parse_run_id("digits/ae/sym/z3/relu/s0/../../../../../tmp/x")
    proc = snakemake(tmp_path / "wd", "-n", "results/runs/../../outside/ae/sym/z3/relu/s0/model.pt", check=False)
    assert proc.returncode != 0
    assert "MissingRuleException" in proc.stdout + proc.stderr or "No rule to produce" in proc.stdout + proc.stderr


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_stale_lock_is_kept_while_its_owner_runs(tmp_path):
    import psutil

    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "0.input.lock").write_text("x")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # snakemake"])
    process = psutil.Process(child.pid)
    deadline = time.monotonic() + 10
    while "snakemake" not in " ".join(process.cmdline()) and time.monotonic() < deadline:  # until exec has happened
        time.sleep(0.05)
    try:
        owner = {"pid": child.pid, "host": os.uname().nodename, "create_time": process.create_time()}
        io.write_json(owner, locks / io.LOCK_OWNER)
        assert io.clear_stale_locks(locks) is None and (locks / "0.input.lock").exists()
    finally:
        child.kill()
        child.wait()
    assert "no longer running" in io.clear_stale_locks(locks)
    assert not (locks / "0.input.lock").exists()


@pytest.mark.slow
def test_diverged_runs_fail_their_check_and_keep_going_marks_them_in_the_tables(tmp_path):
    workdir = tmp_path / "wd"
    proc = snakemake(workdir, "--cores", "2", "--keep-going", configfile=DIVERGE_CONFIG, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    for seed in (0, 1):  # named on the terminal, by run and epoch, and in the check's log
        assert re.search(rf"run digits/vae/sym/z3/relu/s{seed}: training loss is (nan|inf) at epoch 1", out)
    assert "Error in rule check_training" in out and "lower training.lr" in out.lower()
    assert "diverged" in (workdir / "results/logs/check_training/digits/vae/sym/z3/relu.log").read_text()

    # the others finished: the AE cell trained, passed its check and was truncated and intervened on
    ae = workdir / "results/runs/digits/ae/sym/z3/relu"
    assert (ae / "training_check.json").exists() and (ae / "s1/layer_profile.csv").exists()
    assert (workdir / "results/interventions/criticality/digits/ae/z3/relu.csv").exists()
    assert not (workdir / "results/runs/digits/vae/sym/z3/relu/training_check.json").exists()
    assert not (workdir / "results/runs/digits/vae/sym/z3/relu/s0/layer_profile.csv").exists()

    # the training tables mark the diverged runs instead of dropping them
    metrics = pd.read_csv(workdir / "results/tables/train_metrics.csv").set_index("run_id")
    assert len(metrics) == 4
    vae = metrics[metrics["kind"] == "vae"]
    assert (vae["status"] == "diverged").all() and vae["test_loss"].isna().all()
    assert vae["error"].str.contains("at epoch 1").all()
    ae_rows = metrics[metrics["kind"] == "ae"]
    assert (ae_rows["status"] == "ok").all() and ae_rows["error"].isna().all()
    assert np.isfinite(ae_rows["test_mse"]).all()
    summary = pd.read_csv(workdir / "results/tables/train_summary.csv")
    mse = summary[summary["metric"] == "test_mse"].set_index("kind")
    assert mse.loc["vae", "n"] == 0 and mse.loc["vae", "n_failed"] == 2
    assert mse.loc["ae", "n"] == 2 and mse.loc["ae", "n_failed"] == 0
    curves = pd.read_csv(workdir / "results/tables/train_curves.csv")
    assert set(curves["status"]) == {"ok"}  # the VAEs diverged in their first epoch: no epoch to show
    for figure in ("paper/fig2_training_curves", "paper/fig1_reconstruction", "figures/reconstructions_digits_ae"):
        assert (workdir / f"results/{figure}.png").stat().st_size > 0
    assert (workdir / "results/figures/reconstructions_digits_vae.png").stat().st_size > 0  # says none trained
    with pytest.raises(ValueError, match=r"holds no trained weights: run digits/vae/sym/z3/relu/s0 diverged"):
        load_model(workdir / "results/runs/digits/vae/sym/z3/relu/s0/model.pt")

    # nothing is retrained on a rerun: only the failed check is tried again (and what waits for it)
    jobs = planned_jobs(workdir, configfile=DIVERGE_CONFIG)
    assert jobs.get("check_training") == 1 and "train" not in jobs


# Every kind of job that writes a declared output: the log folder its jobs write to (the first thing each job's
# script does is open its log) and the outputs that mark it, in Snakemake's incomplete-records, as in flight.
KILL_POINTS = {
    "train": ("train", r"results/runs/.*/model\.pt"),
    "truncate": ("truncate", r"results/runs/.*/layer_profile\.csv"),
    "freeze": ("freeze", r"results/freeze/"),
    "criticality": ("criticality", r"results/interventions/criticality/"),
    "stitching": ("stitching", r"results/interventions/stitching/"),
    "a table job": ("aggregate", r"results/tables/"),
    "a figure job": ("figures", r"results/figures/"),
    "the paper": ("paper", r"results/paper/"),
}


def in_flight(workdir: Path) -> list[str]:
    """The outputs Snakemake has marked incomplete: the jobs that started and did not finish."""
    root = workdir / ".snakemake" / "incomplete"
    paths = []
    for folder, _, files in os.walk(root):
        parts = [p.removeprefix("@") for p in Path(folder).relative_to(root).parts]
        paths += [base64.urlsafe_b64decode("".join([*parts, name])).decode() for name in files]
    return paths


def kill_when(cmd: list[str], started, output=subprocess.DEVNULL) -> tuple[str | None, float]:
    """Run ``cmd``; SIGKILL its whole process group as soon as ``started(t0)`` names what just started. Returns that
    name (None if the command finished first) and the seconds it ran."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while proc.poll() is None:
            hit = started(t0)
            if hit:
                os.killpg(proc.pid, signal.SIGKILL)
                return hit, time.time() - t0
            time.sleep(0.05)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed"
        return None, time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_study_killed_during_every_kind_of_job_finishes_with_the_same_tables(tiny_study, tmp_path):
    """SIGKILL the tiny study once while each kind of job runs, rerun the same command each time, and compare every
    table with the uninterrupted run (the ``tiny_study`` fixture, same command)."""
    workdir = tmp_path / "wd"
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(REPO / "tests" / "tiny_config.yaml"), "--cores", "2"]
    logs = workdir / "results" / "logs"
    left, done, phases = dict(KILL_POINTS), [], 0

    def started(t0):
        for what, (folder, _) in left.items():
            if any(p.stat().st_mtime >= t0 for p in (logs / folder).rglob("*.log")):
                return what
        return None

    while left:
        what, seconds = kill_when(cmd, started)
        phases += 1
        assert what is not None, f"the study finished before a job of {sorted(left)} was caught running"
        # counted only when Snakemake itself had that job in flight (a job may finish before the kill lands)
        if any(re.match(left[what][1], path) for path in in_flight(workdir)):
            done.append((what, round(seconds, 1)))
            del left[what]
        assert phases < 3 * len(KILL_POINTS), f"{phases} kills and still no job of {sorted(left)} caught in flight"
    finish = subprocess.run(cmd, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr[-4000:]
    print("killed during:", done)

    # the report, a separate command of `make run`: killed once it says it is creating the report
    report, said = workdir / "results" / "report.html", tmp_path / "report.out"
    report_cmd = [*cmd[: cmd.index("--cores")], "--report", str(report)]
    with open(said, "w") as out:
        what, _ = kill_when(report_cmd, lambda t0: "Creating report" in said.read_text() and "report", out)
    assert what == "report" and not report.exists()
    subprocess.run(report_cmd, check=True, capture_output=True)
    assert report.read_text().rstrip().endswith("</html>")

    assert planned_jobs(workdir) == {}, "the rerun left something to do"
    tables = sorted(p.relative_to(tiny_study) for p in (tiny_study / "results/tables").rglob("*") if p.is_file())
    assert tables
    for rel in tables:
        assert (workdir / rel).read_bytes() == (tiny_study / rel).read_bytes(), rel
    assert not list(workdir.glob("results/**/.*.resume*")), "finished jobs leave no resume state"


def test_a_job_logs_its_wall_cpu_and_peak_memory_when_it_ends(tmp_path):
    """What replaced Snakemake's `benchmark:` on the torch rules: the job's last log line, written at exit even
    after an error, with CPU seconds that count the job's own work."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO, format='%(message)s')\n"
        "from aedissect.io import log_resources_at_exit\n"
        "log_resources_at_exit()\n"
        "import time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "block = b'x' * (200 * 2**20)  # written, so resident\n"
        "raise SystemExit(3)\n"
    )
    env = os.environ | {"PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"job resources: (\S+) s wall, (\S+) s CPU, peak memory (\S+) GB", last)
    assert match, last
    wall, cpu, peak = (float(v.replace("\N{MINUS SIGN}", "-")) for v in match.groups())  # plain: all below 1000
    assert cpu >= 0.3 and wall >= cpu * 0.5 and peak >= 0.2
