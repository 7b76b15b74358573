"""Killed runs resume, two instances do not collide, untrusted files do not execute, writes are atomic."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from aedissect.models import load_model
from conftest import REPO, SNAKEMAKE, load_yaml, snakemake

from aedissect import config, io, training

KILL_CONFIG = REPO / "tests" / "kill_config.yaml"
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


def test_killed_pipeline_resumes_bitwise_and_a_second_instance_is_refused(tmp_path):
    workdir = tmp_path / "wd"
    proc = start_snakemake(workdir)
    checkpoint = workdir / RUN_DIR / ".s0.resume.pt"
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
    from aedissect.data import load

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
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "0.input.lock").write_text("x")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # snakemake"])
    cmdline = Path(f"/proc/{child.pid}/cmdline")
    deadline = time.monotonic() + 10
    while b"snakemake" not in cmdline.read_bytes() and time.monotonic() < deadline:  # until exec has happened
        time.sleep(0.05)
    try:
        io.write_json({"pid": child.pid, "host": os.uname().nodename}, locks / io.LOCK_OWNER)
        assert io.clear_stale_locks(locks) is None and (locks / "0.input.lock").exists()
    finally:
        child.kill()
        child.wait()
    assert "no longer running" in io.clear_stale_locks(locks)
    assert not (locks / "0.input.lock").exists()
