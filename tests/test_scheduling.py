"""Snakemake's scheduler keeps one pending wake-up at a time once aedissect/scheduling.py has patched it."""

import inspect
import subprocess
import sys
import textwrap
import threading
import time

from snakemake.scheduling.job_scheduler import JobScheduler

from aedissect import scheduling


class FakeScheduler:
    """What the patched method touches: the semaphore the scheduler loop waits on."""

    def __init__(self):
        self._open_jobs = threading.Semaphore(0)

    _schedule_reevalutation = JobScheduler._schedule_reevalutation


def released(semaphore) -> int:
    count = 0
    while semaphore.acquire(blocking=False):
        count += 1
    return count


def test_snakemake_still_arms_its_wakeup_through_the_patched_method():
    # an upstream rename would leave the patch inert: say so here rather than in a slow run
    assert "self._schedule_reevalutation(" in inspect.getsource(JobScheduler.schedule)
    assert scheduling.coalesce_wakeups()  # in place (conftest may have applied it already: idempotent)
    assert getattr(JobScheduler._schedule_reevalutation, scheduling._PATCHED)


def test_many_requests_give_one_daemon_wakeup_and_the_next_round_can_arm_another():
    class Scheduler(FakeScheduler):
        pass

    assert scheduling.coalesce_wakeups(Scheduler)
    scheduler = Scheduler()
    before = set(threading.enumerate())
    for _ in range(50):  # 50 rounds ask for a wake-up while one is pending
        scheduler._schedule_reevalutation(0.2)
    timers = [t for t in threading.enumerate() if t not in before]
    assert len(timers) == 1 and timers[0].daemon  # a daemon: Snakemake's exit does not wait for it
    time.sleep(0.5)
    assert released(scheduler._open_jobs) == 1
    scheduler._schedule_reevalutation(0.05)  # the round that wake-up started arms the next one
    time.sleep(0.3)
    assert released(scheduler._open_jobs) == 1


def test_a_class_without_the_method_is_left_alone():
    class Other:
        pass

    assert not scheduling.coalesce_wakeups(Other)
    assert not hasattr(Other, "_schedule_reevalutation")


def test_a_workflow_of_short_jobs_runs_one_round_per_event(tmp_path):
    """Patched, the scheduler runs a round per finished job, per second of run time and at the start; unpatched,
    a timer chain per finished job makes the rounds grow with finished jobs x seconds (30 jobs of 1 s: 219)."""
    workflow_dir = str(scheduling.__file__).rsplit("/aedissect/", 1)[0]
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {workflow_dir!r})
            from aedissect.scheduling import coalesce_wakeups
            coalesce_wakeups()
            rule all:
                input: expand("out/{{i}}.txt", i=range(12))
            rule one:
                output: "out/{{i}}.txt"
                shell: "sleep 0.4; touch {{output}}"
            """
        )
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--verbose"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - start
    assert result.stderr.count("Resources before job selection") <= 12 + seconds + 2
