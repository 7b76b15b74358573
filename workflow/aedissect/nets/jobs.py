"""The train job around the loop: one grid cell's runs trained (one by one or as an ensemble), and each run's
outputs and provenance saved the same way whichever way it trained."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from aedissect import io
from aedissect.architectures import has_conv
from aedissect.config import Run, config_hash
from aedissect.controls import convergence
from aedissect.nets.ensemble import train_members
from aedissect.nets.models import build_model
from aedissect.nets.training import reconstruction, remove_state, setup_torch

log = logging.getLogger("aedissect.nets.jobs")


def to_cpu(state: dict) -> dict:
    return {k: v.cpu() for k, v in state.items()}


def save_run(run: Run, result: dict, data: dict, run_dir: Path, n_examples: int, provenance: dict) -> None:
    """Every per-run output: model.pt, config.json, train_log.csv, train_metrics.json, reconstructions.csv.

    A diverged run gets them too, so that the cell's other seeds keep their outputs and the tables can mark it:
    its model.pt holds the error instead of weights and its reconstructions.csv has no rows.
    """
    import pandas as pd

    status = result["status"]
    payload = {"config": run, "config_hash": config_hash(run), "in_dim": result["in_dim"], "status": status}
    if status == "ok":
        payload |= {
            "state": to_cpu(result["state"]),
            "init_state": to_cpu(result["init_state"]),
            "epoch_states": {int(k): to_cpu(v) for k, v in result["epoch_states"].items()},
        }
        # how settled the run is: the relative change of its test loss over the last 10% of its epochs
        metrics = result["metrics"] | {"convergence": convergence([h["test_loss"] for h in result["history"]])}
    else:
        payload["error"] = result["error"]
        metrics = {"error": result["error"]}
    with io.atomic_path(run_dir / "model.pt") as tmp:
        torch.save(payload, tmp)
    io.write_json(run, run_dir / "config.json")
    history = pd.DataFrame(result["history"], columns=["epoch", "train_loss", "test_loss"])
    io.write_csv(history.assign(run_id=run["run_id"]), run_dir / "train_log.csv")
    io.write_json({"run_id": run["run_id"], "status": status, **metrics}, run_dir / "train_metrics.json")
    rows = []
    if status == "ok":
        model = build_model(run, result["in_dim"])
        model.load_state_dict(payload["state"])
        x = data["x_test"][:n_examples]
        with torch.no_grad():
            recon = reconstruction(model, x, run)
        rows = [
            {
                "run_id": run["run_id"],
                "example": i,
                "feature": j,
                "input": float(x[i, j]),
                "reconstruction": float(recon[i, j]),
            }
            for i in range(x.shape[0])
            for j in range(x.shape[1])
        ]
    columns = ["run_id", "example", "feature", "input", "reconstruction"]
    io.write_csv(pd.DataFrame(rows, columns=columns), run_dir / "reconstructions.csv")
    io.write_json(provenance, run_dir / "provenance.json")


def train_runs(
    runs: list[Run],
    data_path: str,
    data_info: dict,
    run_dirs: list[str],
    threads: int,
    device: str,
    n_examples: int,
    tensorboard: Path | None = None,
) -> None:
    """Train the runs of one grid cell, with ``training.ensemble`` all at once as one batched model, and save each.

    The checkpoints (``<cell>/.resume/``, a folder no rule declares) stay until every run of the cell is saved:
    Snakemake deletes all of a job's outputs before rerunning it, so a seed finished before a kill is restored
    from its last checkpoint instead of retrained. ``tensorboard``: the cell's TensorBoard folder
    (``training.tensorboard_folder``), one event folder per seed in it, or None."""
    from aedissect.nets.data import load

    dev = setup_torch(threads, device)
    data = load(data_path)
    run_dirs = [Path(d) for d in run_dirs]
    state_dir = run_dirs[0].parent / ".resume"
    ensemble = len(runs) > 1 and runs[0]["training"]["ensemble"] and not has_conv(runs[0])
    log.info("training %d runs of %s on %s%s", len(runs), runs[0]["run_id"], dev, " as one ensemble" * ensemble)
    start = time.perf_counter()
    names = [f"s{run['seed']}" for run in runs]
    results = train_members(runs, data, dev, names, ensemble=ensemble, state_dir=state_dir, tensorboard=tensorboard)
    seconds = (time.perf_counter() - start) / len(runs)
    for run, run_dir, result in zip(runs, run_dirs, results, strict=True):
        prov = io.provenance(str(dev), threads) | {"train_seconds": seconds}
        prov |= {"ensemble_size": len(runs) if ensemble else 1}
        prov |= {"config_hash": config_hash(run), "data_sha256": data_info["sha256"]}
        save_run(run, result, data, run_dir, n_examples, prov)
        log.info("%s: %s %s", run["run_id"], result["status"], result.get("metrics", ""))
    remove_state(state_dir)
