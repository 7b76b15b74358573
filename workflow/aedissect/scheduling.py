"""One pending scheduler wake-up at a time in Snakemake's main process, instead of one more per finished job.

Snakemake 9's scheduler loop (`JobScheduler.schedule`) ends every round by arming a `threading.Timer` that wakes
it again after the rate limiter's timespan (`--max-jobs-per-timespan`, default 100/1s), whether or not a timer is
already pending. Each round a timer starts therefore arms one more, and every finished job starts a round: after n
finished jobs, n timers chase one another and the loop runs about n rounds per second, each of which stats every
input file of every ready job (`update_input_sizes`). Measured on the default study (248 jobs, 2 cores, py-spy):
Snakemake's own process used about a third of a core by the end, taken from the jobs; a toy workflow of 30
one-second jobs ran 219 scheduling rounds where about 45 do the work. The timers are also non-daemon threads, so
a larger timespan would hold Snakemake's exit for up to that long.

`coalesce_wakeups` replaces the method that arms the timer with one that keeps at most one pending, as a daemon
thread. Any wake-up runs a full round, so one pending timer serves the rate limiter exactly as many did.
"""

import threading

_PATCHED = "_aedissect_coalesced"


def coalesce_wakeups(scheduler_class=None) -> bool:
    """Patch Snakemake's JobScheduler (or the class given, for tests); returns whether the patch is in place.

    Does nothing, and returns False, where the scheduler has no such method (a Snakemake this was not written
    for): it then runs as shipped, only slower."""
    if scheduler_class is None:
        from snakemake.scheduling.job_scheduler import JobScheduler as scheduler_class
    original = getattr(scheduler_class, "_schedule_reevalutation", None)  # sic: Snakemake's spelling
    if original is None:
        return False
    if getattr(original, _PATCHED, False):
        return True
    scheduler_class._schedule_reevalutation = _schedule_one_wakeup
    return True


_lock = threading.Lock()


def _schedule_one_wakeup(self, delay) -> None:
    with _lock:
        if getattr(self, "_aedissect_wakeup_pending", False):
            return
        self._aedissect_wakeup_pending = True

    def wake():
        # cleared before the release, so that the round this wake-up starts may arm the next one
        with _lock:
            self._aedissect_wakeup_pending = False
        self._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    timer.start()


setattr(_schedule_one_wakeup, _PATCHED, True)
