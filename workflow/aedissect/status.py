"""Run status: a run whose loss stops being finite is recorded as diverged, not raised out of its job.

A training job holds every seed of a grid cell; if one diverged seed failed the job, Snakemake would delete
the outputs of the seeds that trained fine. So ``jobs.train_runs`` writes a diverged run's outputs with
``status: diverged`` and its error, and a separate check per cell (``check_trained``, rule check_training)
is what fails, naming the run. Everything that loads the cell's models waits for that check.
"""

from __future__ import annotations

from aedissect import io


class TrainingDiverged(RuntimeError):
    """A loss that is not finite; ``history`` holds the epochs completed before it."""

    def __init__(self, message: str, history: list[dict] = ()):
        super().__init__(message)
        self.history = list(history)


def diverged_result(err: TrainingDiverged, in_dim: int) -> dict:
    """What ``jobs.save_run`` records for a run that diverged: its error and the epochs before it, no weights."""
    return {"status": "diverged", "error": str(err), "history": err.history, "in_dim": in_dim}


def check_trained(metric_paths: list[str]) -> dict:
    """The final test loss of every run of a cell; TrainingDiverged naming each run that has none."""
    records = [io.read_json(path) for path in metric_paths]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        lines = "".join(f"\n  {r['error']}" for r in failed)
        raise TrainingDiverged(
            f"{len(failed)} of {len(records)} runs of this grid cell diverged:{lines}\n"
            "Each is recorded with status 'diverged' in its train_metrics.json and in "
            "results/tables/train_metrics.csv (snakemake --keep-going builds the tables of the other runs); "
            "nothing downstream of this cell runs. Lower training.lr (or, for a VAE, vae.beta) and rerun: "
            "a changed config retrains the cell."
        )
    return {"runs": [{"run_id": r["run_id"], "test_loss": r["test_loss"]} for r in records]}
