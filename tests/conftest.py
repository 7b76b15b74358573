"""Shared fixtures: the repository, study configs, and one end-to-end run of the tiny study."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY_CONFIG = REPO / "tests" / "tiny_config.yaml"
OFFLINE_CONFIG = REPO / "tests" / "offline_config.yaml"
CONV_CONFIG = REPO / "tests" / "conv_config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# fixtures that run a whole study: a test using one is slow (`pytest -m "not slow"` leaves it out)
STUDY_FIXTURES = {"tiny_study", "tiny_study_again", "offline_study", "conv_study", "cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if STUDY_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


def killed_while_saving(monkeypatch, fit, resume, at: int = 3):
    """Run ``fit(resume)`` until its ``at``-th checkpoint save, which raises KeyboardInterrupt (a kill), as a job
    killed while writing that checkpoint; the save machinery is put back after. Returns the checkpoint left."""
    import torch

    from aedissect import io

    real_atomic_path, saves = io.atomic_path, []

    def killed(path):
        saves.append(path)
        if len(saves) == at:
            raise KeyboardInterrupt("killed")
        return real_atomic_path(path)

    monkeypatch.setattr(io, "atomic_path", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(resume)
    monkeypatch.setattr(io, "atomic_path", real_atomic_path)
    return torch.load(resume, weights_only=True)


def load_yaml(path) -> dict:
    """A study config as the workflow and ``aedissect check`` read it."""
    from aedissect import config

    return config.load_yaml(path)


@pytest.fixture
def tiny_config() -> dict:
    return copy.deepcopy(load_yaml(TINY_CONFIG))


def snakemake(workdir, *args, configfile=TINY_CONFIG, check=True, timeout=900, command=SNAKEMAKE, env=None, **kwargs):
    """Run the workflow in ``workdir`` (never in the repository) with Snakemake's ``command``, in ``env`` (by
    default this process's environment), and return the completed process."""
    cmd = [*command, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    env = (os.environ if env is None else env) | {"PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir, *args, configfile=TINY_CONFIG, **kwargs) -> dict[str, int]:
    """Rule name -> job count of a dry run (``kwargs`` as for ``snakemake``)."""
    proc = snakemake(workdir, "-n", *args, configfile=configfile, **kwargs)
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


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The tiny study run once, end to end, with 2 cores; tests read its results/."""
    workdir = tmp_path_factory.mktemp("tiny_study")
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture(scope="session")
def tiny_report(tiny_study) -> Path:
    """The tiny study's HTML report."""
    snakemake(tiny_study, "--report", "results/report.html", timeout=300)
    return tiny_study / "results/report.html"


@pytest.fixture(scope="session")
def tiny_study_again(tmp_path_factory, tiny_study) -> Path:
    """The same study in a second directory, for determinism checks."""
    workdir = tmp_path_factory.mktemp("tiny_study_again")
    snakemake(workdir, "--cores", "2")
    return workdir


# what the offline study is run to: the truncation tables and findings.md (and every table findings.md reads)
OFFLINE_TARGETS = ("results/tables/encoding_locus.csv", "results/paper/findings.md")


@pytest.fixture(scope="session")
def offline_study(tmp_path_factory) -> Path:
    """shapes and mnist1d, generated here, in a few epochs with 2 cores up to the truncation tables and findings.md
    (tests/offline_config.yaml)."""
    workdir = tmp_path_factory.mktemp("offline_study")
    snakemake(workdir, "--cores", "2", *OFFLINE_TARGETS, configfile=OFFLINE_CONFIG)
    return workdir


@pytest.fixture(scope="session")
def conv_study(tmp_path_factory) -> Path:
    """tests/conv_config.yaml, conv families on shapes, run with 2 cores up to the paper's tables and findings."""
    workdir = tmp_path_factory.mktemp("conv_study")
    snakemake(workdir, "--cores", "2", "paper", configfile=CONV_CONFIG)
    return workdir


def copy_study(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
