"""Files: every output is written to a temporary name beside it and renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

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
    import torch

    return {
        "git_commit": git_commit(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "device": device,
        "threads": threads,
    }


LOCK_OWNER = "aedissect.owner"


def record_lock_owner(lock_dir) -> None:
    """Note which process holds Snakemake's lock, so that a later run can tell a stale lock from a live one."""
    write_json({"pid": os.getpid(), "host": platform.node()}, Path(lock_dir) / LOCK_OWNER)


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except (OSError, IndexError):
        return False
    return state != "Z" and b"snakemake" in cmdline  # a zombie, or a reused pid, holds no lock


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
    if owner.get("host") != platform.node() or _process_alive(int(owner.get("pid", -1))):
        return None
    for path in locks:
        path.unlink(missing_ok=True)
    owner_path.unlink(missing_ok=True)
    return f"removed the lock left by Snakemake process {owner['pid']}, which is no longer running"
