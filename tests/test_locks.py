"""Snakemake's lock is removed only when the run that took it is gone: decided with psutil, so a laptop without
/proc (macOS) keeps a running study's lock too."""

import builtins
import io as stdio
import os
import subprocess
import sys
import time

import psutil
import pytest

from aedissect import io

HOST = os.uname().nodename


def spawn(tag: str) -> subprocess.Popen:
    """A sleeping child whose command line carries ``tag``, once it has exec'd (its cmdline is final)."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {tag}"])
    deadline = time.monotonic() + 10
    while tag not in " ".join(psutil.Process(child.pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return child


@pytest.fixture
def children():
    started = []
    yield lambda tag: started.append(spawn(tag)) or started[-1]
    for child in started:
        child.kill()
        child.wait()


def locked(tmp_path, owner: dict):
    locks = tmp_path / "locks"
    locks.mkdir(exist_ok=True)
    (locks / "0.input.lock").write_text("x")
    io.write_json(owner, locks / io.LOCK_OWNER)
    return locks


def owner_of(pid: int, **changes) -> dict:
    return {"pid": pid, "host": HOST, "create_time": psutil.Process(pid).create_time()} | changes


def test_live_owner_keeps_its_lock(tmp_path, children):
    child = children("snakemake --cores 2")
    locks = locked(tmp_path, owner_of(child.pid))
    assert io.clear_stale_locks(locks) is None and (locks / "0.input.lock").exists()


def test_dead_owner_loses_its_lock(tmp_path, children):
    child = children("snakemake --cores 2")
    locks = locked(tmp_path, owner_of(child.pid))
    child.kill()
    child.wait()
    assert "no longer running" in io.clear_stale_locks(locks)
    assert not (locks / "0.input.lock").exists() and not (locks / io.LOCK_OWNER).exists()


def test_killed_owner_not_yet_reaped_loses_its_lock(tmp_path, children):
    child = children("snakemake --cores 2")
    locks = locked(tmp_path, owner_of(child.pid))
    child.kill()  # a zombie until its parent waits for it
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no longer running" in io.clear_stale_locks(locks)


def test_reused_pid_of_another_program_does_not_keep_the_lock(tmp_path, children):
    child = children("some other program")
    locks = locked(tmp_path, owner_of(child.pid))
    assert "no longer running" in io.clear_stale_locks(locks)


def test_reused_pid_started_after_the_owner_does_not_keep_the_lock(tmp_path, children):
    child = children("snakemake --cores 2")
    started = psutil.Process(child.pid).create_time()
    locks = locked(tmp_path, owner_of(child.pid, create_time=started - 3600))  # the owner started an hour earlier
    assert "no longer running" in io.clear_stale_locks(locks)


def test_owner_on_another_host_or_without_a_record_is_left_alone(tmp_path):
    locks = locked(tmp_path, {"pid": 2**22 + 1, "host": "elsewhere", "create_time": 0.0})
    assert io.clear_stale_locks(locks) is None
    (locks / io.LOCK_OWNER).unlink()
    assert io.clear_stale_locks(locks) is None and (locks / "0.input.lock").exists()


def test_record_names_this_process_and_its_start_time(tmp_path):
    io.record_lock_owner(tmp_path)
    owner = io.read_json(tmp_path / io.LOCK_OWNER)
    assert owner == {"pid": os.getpid(), "host": HOST, "create_time": psutil.Process().create_time()}


# ---------------------------------------------------------------- without /proc (macOS)


class FakeProcess:
    """psutil.Process over a made-up process table, as psutil answers on macOS from the kernel's table."""

    table: dict = {}  # pid -> (command line, create time, status) or "denied"

    def __init__(self, pid=None):
        self.pid = os.getpid() if pid is None else pid
        if self.pid not in self.table:
            raise psutil.NoSuchProcess(self.pid)

    def _entry(self):
        if self.table[self.pid] == "denied":
            raise psutil.AccessDenied(self.pid)
        return self.table[self.pid]

    def cmdline(self):
        return self._entry()[0]

    def create_time(self):
        return self._entry()[1]

    def status(self):
        return self._entry()[2]


@pytest.fixture
def no_proc(monkeypatch):
    """Every attempt to read /proc fails, as on macOS, and is recorded; psutil answers from FakeProcess.table."""
    tried = []

    def guard(real):
        def call(*args, **kwargs):
            path = args[0] if args else kwargs.get("path", kwargs.get("file", ""))
            if isinstance(path, str | bytes | os.PathLike) and os.fsdecode(path).startswith("/proc"):
                tried.append(os.fsdecode(path))
                raise FileNotFoundError(path)
            return real(*args, **kwargs)

        return call

    for module, name in [(builtins, "open"), (stdio, "open"), (os, "open"), (os, "stat"), (os, "listdir")]:
        monkeypatch.setattr(module, name, guard(getattr(module, name)))
    monkeypatch.setattr(psutil, "Process", FakeProcess)
    monkeypatch.setattr(FakeProcess, "table", {})
    yield FakeProcess.table
    assert not tried, f"read {tried}"


RUNNING = psutil.STATUS_SLEEPING


@pytest.mark.parametrize(
    ("process", "kept"),
    [
        ((["python", "/venv/bin/snakemake", "--cores", "2"], 1000.0, RUNNING), True),  # the owner, alive
        (None, False),  # gone
        ((["python", "/venv/bin/snakemake", "--cores", "2"], 1000.0, psutil.STATUS_ZOMBIE), False),  # killed
        ((["/usr/bin/vim", "notes.txt"], 1000.0, RUNNING), False),  # its pid, given to another program
        ((["python", "/venv/bin/snakemake", "-n"], 5000.0, RUNNING), False),  # given to a later snakemake
        ("denied", True),  # another user's process: cannot tell, so the lock stays
    ],
)
def test_lock_decisions_without_proc(tmp_path, no_proc, process, kept):
    pid = 4242
    if process is not None:
        no_proc[pid] = process
    locks = locked(tmp_path, {"pid": pid, "host": HOST, "create_time": 1000.0})
    assert (io.clear_stale_locks(locks) is None) == kept
    assert (locks / "0.input.lock").exists() == kept


def test_record_without_proc(tmp_path, no_proc):
    no_proc[os.getpid()] = (["python", "snakemake"], 1234.5, RUNNING)
    io.record_lock_owner(tmp_path)
    assert io.read_json(tmp_path / io.LOCK_OWNER)["create_time"] == 1234.5
