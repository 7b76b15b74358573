"""Files: every output is written to a temporary name beside it and renamed into place.

Snakemake's own process imports this (the lock helpers) while it parses the workflow, possibly where only
Snakemake and its dependencies (psutil among them) are installed: pandas, numpy and torch are imported only
where they are used."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def write_csv(df: pd.DataFrame, path) -> None:
    # fixed float format so that the same numbers always give the same bytes
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(device: str, threads: int) -> dict:
    """Where and with what a result was made; kept apart from the result tables."""
    import numpy
    import pandas
    import torch

    return {
        "git_commit": git_commit(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "device": device,
        "threads": threads,
    }


LOCK_OWNER = "aedissect.owner"


def record_lock_owner(lock_dir) -> None:
    """Note which process holds Snakemake's lock, so that a later run can tell a stale lock from a live one.

    The start time tells the owner from a later process that was given the same pid.
    """
    me = psutil.Process()
    write_json({"pid": me.pid, "host": platform.node(), "create_time": me.create_time()}, Path(lock_dir) / LOCK_OWNER)


# two readings of one process's start time differ by at most a clock tick (Linux derives it from the boot time);
# a pid reused by a later process starts later than that
CREATE_TIME_TOLERANCE_S = 1.0


def _owner_alive(owner: dict) -> bool:
    """Whether the recorded owner still runs: its pid is a Snakemake process started when the record says.

    psutil reads /proc on Linux and the kernel's process table on macOS (which has no /proc). A process that
    cannot be inspected (another user's) counts as alive: keeping a stale lock costs a ``--unlock``, removing a
    live one lets two runs write the same files.
    """
    try:
        process = psutil.Process(int(owner["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        recorded = owner.get("create_time")  # absent from a record written before start times were kept
        if recorded is not None and abs(process.create_time() - float(recorded)) > CREATE_TIME_TOLERANCE_S:
            return False
        return "snakemake" in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def clear_stale_locks(lock_dir) -> str | None:
    """Remove Snakemake's lock files if the run that took them was killed on this host.

    A lock whose recorded owner is still running (a second instance) is left alone, so Snakemake refuses
    as usual; so is a lock with no record or one taken on another host. Returns what was done, or None.
    """
    lock_dir = Path(lock_dir)
    owner_path = lock_dir / LOCK_OWNER
    locks = [p for p in lock_dir.glob("*.lock")]
    if not locks or not owner_path.exists():
        return None
    try:
        owner = read_json(owner_path)
    except (OSError, ValueError):
        return None
    if owner.get("host") != platform.node() or _owner_alive(owner):
        return None
    for path in locks:
        path.unlink(missing_ok=True)
    owner_path.unlink(missing_ok=True)
    return f"removed the lock left by Snakemake process {owner.get('pid')}, which is no longer running"


def log_resources_at_exit() -> None:
    """At the end of the job, log its wall seconds since the process started, its CPU seconds and its peak memory.

    What Snakemake's ``benchmark:`` recorded, exactly and for free: the benchmark samples each job's process tree
    twice a second in Snakemake's own process (smaps of every process), which on the default study took ~70 CPU
    seconds from 2 cores (py-spy), and its CPU time undercounts a short job (14.8 s of 18.9 measured)."""
    import atexit
    import logging
    import resource
    import sys
    import time

    from aedissect.formatting import number

    def report():
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        peak_gb = own.ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20)  # bytes on macOS, KiB on Linux
        wall = time.time() - psutil.Process().create_time()
        logging.getLogger("aedissect").info(
            "job resources: %s s wall, %s s CPU, peak memory %s GB", number(wall), number(cpu), number(peak_gb)
        )

    atexit.register(report)
