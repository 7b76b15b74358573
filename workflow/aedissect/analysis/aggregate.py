"""Collect per-run outputs into tidy long-format tables that carry every config column."""

from __future__ import annotations

import pandas as pd

from aedissect import io
from aedissect.analysis.stats import summarize
from aedissect.config import Run, config_columns
from aedissect.formatting import MISSING, is_constant, number

# config columns that identify a grid cell, i.e. what a summary over seeds groups by
CELL_COLUMNS = [
    "dataset",
    "kind",
    "arch",
    "family",
    "encoder",
    "decoder",
    "bottleneck",
    "activation",
    "epochs",
    "batch_size",
    "lr",
    "beta",
    "likelihood",
]
VAE_METRICS = ["neg_elbo", "rate", "distortion", "active_units"]
# convergence: the relative change of the test loss over the last 10% of epochs (aedissect.controls.convergence);
# pca_mse: the reference beside every run, PCA-z's test MSE on the run's data set at its bottleneck (fitted on train)
TRAIN_METRICS = ["test_loss", "test_mse", "psnr", *VAE_METRICS, "convergence", "pca_mse"]


def runs_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([config_columns(run) for run in runs])


def with_config(runs: list[Run], frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-run frames (each with a run_id column) and join the runs' config columns."""
    body = pd.concat(frames, ignore_index=True)
    return runs_table(runs).merge(body, on="run_id", how="right", validate="one_to_many")


def train_metrics_table(runs: list[Run], metric_paths: list[str], reference_paths: list[str] = ()) -> pd.DataFrame:
    """One row per run: config columns, status, every training metric (missing ones NaN) and the error of a
    run that diverged (status ``diverged``, no metrics).

    ``reference_paths``: the controls jobs' references (``results/controls/<dataset>/references.csv``), whose
    ``pca_mse`` is joined on data set and bottleneck; it is the same for every run of a data set and bottleneck,
    a diverged one included."""
    rows = [io.read_json(path) for path in metric_paths]
    table = runs_table(runs).merge(pd.DataFrame(rows), on="run_id", how="left", validate="one_to_one")
    table = table.drop(columns=["pca_mse"], errors="ignore")
    if reference_paths:
        refs = pd.concat([pd.read_csv(path) for path in reference_paths], ignore_index=True)
        refs = refs[["dataset", "bottleneck", "pca_mse"]]
        table = table.merge(refs, on=["dataset", "bottleneck"], how="left", validate="many_to_one")
    return table.reindex(columns=[*runs_table(runs[:1]).columns, "status", *TRAIN_METRICS, "error"])


def train_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, n and CI over the seeds that trained; ``n_failed`` counts the seeds of the cell that diverged,
    so a cell whose every seed diverged still has its rows (n = 0)."""
    long = metrics.melt(id_vars=[*CELL_COLUMNS, "status"], value_vars=TRAIN_METRICS, var_name="metric")
    long = long[(long["kind"] == "vae") | ~long["metric"].isin(VAE_METRICS)]
    long["failed"] = long["status"] != "ok"
    summary = summarize(long, [*CELL_COLUMNS, "metric"])
    failed = long.groupby([*CELL_COLUMNS, "metric"], sort=True, dropna=False)["failed"].sum()
    return summary.assign(n_failed=failed.to_numpy().astype(int))


def controls_table(runs: list[Run], check_paths: list[str]) -> pd.DataFrame:
    """Every control of every run (``aedissect.controls``): config columns, then ``check`` and its verdict."""
    return with_config(runs, [pd.read_csv(path) for path in check_paths])


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table, one row per cell and metric: mean ± std, 95% CI, n (numbers right-aligned)."""
    lines = [
        "| dataset | kind | arch | z | metric | mean ± std | 95% CI | n | diverged |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples():
        if row.n < 2:
            ci = MISSING
        elif is_constant(row._asdict()):
            ci = "all seeds equal"
        else:
            ci = f"[{number(row.ci95_low)}, {number(row.ci95_high)}]"
        lines.append(
            f"| {row.dataset} | {row.kind} | {row.arch} | {row.bottleneck} | {row.metric} | "
            f"{number(row.mean)} ± {number(row.std)} | {ci} | {row.n} | {row.n_failed} |"
        )
    return "\n".join(lines) + "\n"


def curves_table(runs: list[Run], log_paths: list[str], metrics: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch losses of every run, long format (split = train / test), with the run's status from
    ``metrics``: a diverged run keeps the epochs before it diverged."""
    frames = [pd.read_csv(path) for path in log_paths]
    wide = with_config(runs, frames).merge(metrics[["run_id", "status"]], on="run_id", validate="many_to_one")
    id_vars = [c for c in wide.columns if c not in ("train_loss", "test_loss")]
    long = wide.melt(id_vars=id_vars, value_vars=["train_loss", "test_loss"], var_name="split", value_name="loss")
    long["split"] = long["split"].str.removesuffix("_loss")
    return long


def reconstructions_table(runs: list[Run], paths: list[str], image_shapes: dict[str, list[int]]) -> pd.DataFrame:
    """Example reconstructions of the first seed of every cell, with the data set's image shape."""
    table = with_config(runs, [pd.read_csv(path) for path in paths])
    table["image_shape"] = table["dataset"].map(lambda d: "x".join(map(str, image_shapes.get(d, []))))
    return table
