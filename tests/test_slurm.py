"""The SLURM profile on a real one-node SLURM cluster (slurmctld, slurmd, slurmdbd + MariaDB, munge).

tests/slurm_cluster.sh installs the Debian packages when missing and starts the daemons;
the study in tests/slurm_config.yaml goes through profiles/slurm, and the test checks that every job
ran as a SLURM job (job ids in Snakemake's output and the SLURM logs, states in sacct), that the
result tables equal those of a local run of the same study, and that every daemon the script started
is stopped again by its recorded PID. Needs root and apt-get (or the packages installed); skipped
with the reason elsewhere, but on CI (CI set) it must run, so there it fails instead.

Each SLURM job costs ~15 s of scheduling and two Snakemake start-ups, so the torch jobs (prepare_data,
train and the other rules whose env, as Snakemake parsed the workflow, is envs/torch.yaml) are SLURM jobs of
their own, and the tables and figures after them are submitted as one group job (`--groups`,
`--group-components`), as a user would bundle a study's many small jobs on a real cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aedissect.workflow_rules import local_rules, torch_rules
from conftest import REPO, planned_jobs, snakemake

SCRIPT = REPO / "tests" / "slurm_cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
STUDY = REPO / "tests" / "slurm_config.yaml"
DAEMONS = ["munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"]
MARKER = "# written by aedissect tests/slurm_cluster.sh"
TABLE_SUFFIXES = {".csv", ".md", ".tex"}


def unavailable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "SLURM daemons need Linux"
    if os.geteuid() != 0:
        return "starting munged/slurmctld/slurmd (and installing them) needs root"
    if not shutil.which("apt-get") and not all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return "no apt-get to install slurm-wlm, slurmdbd, munge and mariadb-server"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and MARKER not in conf.read_text():
        return "this machine has its own /etc/slurm/slurm.conf; the test does not touch a site's SLURM"
    return None


def alive(pid: int) -> bool:
    """Running, where a zombie (state Z, reaped slowly here) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def result_tables(workdir: Path) -> dict[str, bytes]:
    files = {}
    for folder in ("results/tables", "results/paper"):
        for path in sorted((workdir / folder).rglob("*")):
            if path.is_file() and path.suffix in TABLE_SUFFIXES:
                files[str(path.relative_to(workdir))] = path.read_bytes()
    return files


SKIP_VARIABLE = "AEDISSECT_SKIP_CLUSTER"  # README: `AEDISSECT_SKIP_CLUSTER=1 make test` installs and starts nothing


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get(SKIP_VARIABLE):
        if os.environ.get("CI"):
            pytest.fail(f"the SLURM test must run on CI: unset {SKIP_VARIABLE}")
        pytest.skip(f"{SKIP_VARIABLE} is set: no SLURM packages installed, no /etc/slurm written, no daemon started")
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the SLURM test must run on CI: {reason}")
        pytest.skip(reason)
    # not under pytest's private (0700) temporary folder: the daemons run as users munge and mysql
    state = Path(tempfile.mkdtemp(prefix="aedissect-slurm-"))
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=600)
        assert start.returncode == 0, f"cluster start failed:\n{start.stdout}\n{start.stderr}"
        # idempotent: a second start finds every daemon running and starts nothing
        recorded = {d: state / "pids" / f"{d}.pid" for d in DAEMONS}
        pids = {d: int(path.read_text()) for d, path in recorded.items() if path.exists()}
        again = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert {d: int((state / "pids" / f"{d}.pid").read_text()) for d in pids} == pids
        assert "running, pid" not in again.stderr, "a second start must not start daemons again"
        yield {"state": state, "pids": pids}
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=300)
        print(stop.stderr)
        if stop.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)


def test_study_through_the_slurm_profile_matches_the_local_run(cluster, tmp_path):
    assert {"slurmctld", "slurmd", "slurmdbd", "mariadbd"} <= cluster["pids"].keys()
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    snakemake(local, "--cores", "2", configfile=STUDY)

    jobs = planned_jobs(remote, configfile=STUDY)
    own = {rule for rule in jobs if rule in torch_rules(STUDY)}
    on_host = {rule for rule in jobs if rule in local_rules(STUDY)}
    grouped = {rule for rule in jobs if rule not in own | on_host and rule != "all"}
    assert {"prepare_data", "train"} <= own and on_host == {"check_training"} and grouped
    group_args = ["--groups", *(f"{rule}=post" for rule in sorted(grouped)), "--group-components", "post=1000"]
    # a group job asks SLURM for the threads and memory of the jobs it runs side by side: at most 2 at once
    group_args += ["--cores", "2", "--resources", "mem_mb=4000"]
    proc = snakemake(
        remote,
        "--profile",
        str(PROFILE),
        # a test cluster answers at once: poll every 2 s instead of the profile's 30 s
        "--seconds-between-status-checks",
        "2",
        "--slurm-init-seconds-before-status-checks",
        "1",
        *group_args,
        configfile=STUDY,
        timeout=900,
    )
    out = proc.stdout + proc.stderr

    # every job but the local ones was submitted to SLURM: one job id per torch job, one for the group of the rest
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    ids = [int(jid) for jid, _ in submitted]
    assert len(ids) == len(set(ids)) == sum(jobs[r] for r in own) + 1, out[-3000:]
    ran_in_slurm = set()
    for jid, log in submitted:
        log = Path(log)
        assert log.name == f"{jid}.log" and log.exists(), log
        text = log.read_text()
        ran_in_slurm |= set(re.findall(r"^(?:local)?rule (\w+):", text, flags=re.M))
        assert "Finished job" in text or "steps (100%) done" in text, text[-2000:]
    assert ran_in_slurm == set(jobs) - {"all"} - on_host, "every rule but the local ones ran inside a SLURM job"
    assert re.search(r"^localrule check_training:", out, flags=re.M), "the local rules ran on the submitting host"

    # and SLURM's accounting (slurmdbd) saw each of them complete
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode,Comment", "-j", ",".join(map(str, ids))],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("|") for line in sacct.stdout.strip().splitlines()]
    assert sorted(int(r[0]) for r in rows) == sorted(ids)
    for jid, state, exit_code, comment in rows:
        assert (state, exit_code) == ("COMPLETED", "0:0"), (jid, state, exit_code)
        assert comment.startswith(("rule_", "group_")), comment
    assert {c.split("_wildcards_")[0].removeprefix("rule_") for *_, c in rows} >= own

    # the same tables, byte for byte, as the local run
    local_tables, remote_tables = result_tables(local), result_tables(remote)
    assert local_tables.keys() == remote_tables.keys() and "results/tables/train_metrics.csv" in local_tables
    differ = [name for name in local_tables if local_tables[name] != remote_tables[name]]
    assert not differ, f"tables differ between the SLURM and the local run: {differ}"


def test_stop_ends_every_daemon_it_started(cluster):
    pids = cluster["pids"]
    stop = subprocess.run(
        ["bash", str(SCRIPT), "stop", str(cluster["state"])], capture_output=True, text=True, timeout=300
    )
    assert stop.returncode == 0, stop.stderr
    assert pids and not [d for d, pid in pids.items() if alive(pid)], stop.stderr
    assert not list((cluster["state"] / "pids").glob("*.pid"))


def test_make_test_s_cluster_set_up_and_its_skip_variable_are_documented_and_ci_keeps_the_test():
    readme = (REPO / "README.md").read_text()
    test_line = next(line for line in readme.splitlines() if line.startswith("make test"))
    assert "SLURM" in test_line, test_line
    assert SKIP_VARIABLE in readme and "/etc/slurm" in readme and "apt" in readme and SCRIPT.name in readme
    assert f"unset {SKIP_VARIABLE}" in (REPO / ".ci" / "run").read_text()
    assert SKIP_VARIABLE in (REPO / "docs" / "development.md").read_text()
