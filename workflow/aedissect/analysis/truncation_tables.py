"""The truncation tables: every run's layer profile with its config, the summaries over seeds, the encoding loci,
the reparametrisation check.

Read from the files the truncate jobs (``aedissect.nets.probes``) wrote; pandas only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedissect.analysis import stats
from aedissect.analysis.aggregate import CELL_COLUMNS, with_config
from aedissect.config import Run, run_cell

# the per-run layer profile the truncate job writes (long format: one row per state, cut and metric); state:
# "trained" (the model) or "init" (the same network at its initial weights, fewer metrics)
PROFILE_COLUMNS = ["run_id", "state", "cut", "layer", "side", "relative_depth", "metric", "value"]
STATES = ("trained", "init")
# the per-cell reparametrisation table (truncate job, probes.reparam_cell): a model against its
# function-preserving twin, per cut and metric
REPARAM_COLUMNS = [
    "run_id",
    "cut",
    "layer",
    "side",
    "relative_depth",
    "metric",
    "value_original",
    "value_reparam",
    "abs_change",
    "rel_change",
    "function_gap",
]
# a metric counts as reparametrisation-invariant when no run and cut moves it by more than this (relative)
INVARIANT_TOLERANCE = 1e-6
# encoding-locus criteria: (name, metric, how, exclude the bottleneck cut itself); how: min / max (the cut of the
# extreme, ties to the cut nearest the bottleneck) or reach (the first cut from the input whose value reaches
# REACH_FRACTION of the maximum over the cuts)
LOCUS_CRITERIA = (
    ("twonn_min", "twonn", "min", False),
    ("pr_min", "participation_ratio", "min", False),
    ("cka_bottleneck_max", "cka_bottleneck", "max", True),
    ("factor_r2_95", "factor_r2_linear", "reach", False),
    ("factor_r2_max", "factor_r2_linear", "max", False),
)
REACH_FRACTION = 0.95
# an R² whose maximum over the cuts is not positive: no cut holds anything, so no locus of it
R2_METRICS = ("factor_r2_linear",)


def trained(profiles: pd.DataFrame) -> pd.DataFrame:
    """The rows of the trained models (a profile written before the state column existed is all trained)."""
    return profiles[profiles["state"] == "trained"] if "state" in profiles else profiles


def with_state(profile: pd.DataFrame) -> pd.DataFrame:
    """A per-run profile in PROFILE_COLUMNS order; one without a state column (older files) is all trained."""
    return (profile if "state" in profile else profile.assign(state="trained"))[PROFILE_COLUMNS]


def _locus_cut(sel: pd.DataFrame, how: str, bottleneck_cut: int) -> pd.Series | None:
    """The row of ``sel`` (one run, one metric, finite values) a criterion picks, None when it has none."""
    best = sel["value"].min() if how == "min" else sel["value"].max()
    if how == "reach" or sel["metric"].iloc[0] in R2_METRICS:
        if not best > 0:  # no cut holds anything (to reach a share of)
            return None
    if how == "reach":
        return sel.loc[sel.loc[sel["value"] >= REACH_FRACTION * best, "cut"].idxmin()]
    ties = sel[np.isclose(sel["value"], best, rtol=1e-12, atol=1e-12)]
    return ties.loc[(ties["cut"] - bottleneck_cut).abs().idxmin()]


def encoding_locus(profiles: pd.DataFrame) -> pd.DataFrame:
    """Per trained run and criterion (LOCUS_CRITERIA): the cut where it is reached and its offset from the
    bottleneck.

    ``offset`` is in layers (cut - bottleneck cut; negative inside the encoder, positive inside the
    decoder), ``relative_offset`` in relative depth. For min and max, ties go to the cut nearest the
    bottleneck; ``factor_r2_95`` is the first cut (from the input, over all cuts) whose linear factor R²
    reaches 95% of the run's maximum, ``factor_r2_max`` the cut of that maximum (data with known factors
    only; neither when no cut has a positive R²).
    """
    rows = []
    for rid, run in trained(profiles).groupby("run_id", sort=False):
        bn = run[run["side"] == "bottleneck"].iloc[0]
        for name, metric, how, skip_bottleneck in LOCUS_CRITERIA:
            sel = run[run["metric"] == metric].dropna(subset=["value"])
            if skip_bottleneck:
                sel = sel[sel["side"] != "bottleneck"]
            if sel.empty:
                continue
            row = _locus_cut(sel, how, int(bn["cut"]))
            if row is None:
                continue
            rows.append(
                {
                    "run_id": rid,
                    "locus": name,
                    "metric": metric,
                    "cut": int(row["cut"]),
                    "layer": row["layer"],
                    "side": row["side"],
                    "value": float(row["value"]),
                    "bottleneck_cut": int(bn["cut"]),
                    "offset": int(row["cut"] - bn["cut"]),
                    "relative_offset": float(row["relative_depth"] - bn["relative_depth"]),
                }
            )
    return pd.DataFrame(rows)


def reparam_summary(reparam: pd.DataFrame) -> pd.DataFrame:
    """Per metric over every run and cut of the reparametrisation table: n_runs, n (rows), the largest absolute
    and relative change, the median relative change, the largest function gap, and ``invariant`` (no relative
    change above INVARIANT_TOLERANCE)."""
    rows = []
    for metric, group in reparam.groupby("metric", sort=True):
        rel = group["rel_change"].astype(float)
        known = rel.dropna()
        rows.append(
            {
                "metric": metric,
                "n_runs": int(group["run_id"].nunique()),
                "n": int(len(group)),
                "max_abs_change": float(group["abs_change"].max()),
                "max_rel_change": float(known.max()) if len(known) else np.nan,
                "median_rel_change": float(known.median()) if len(known) else np.nan,
                "max_function_gap": float(group["function_gap"].max()),
                "invariant": bool(len(known) and known.max() <= INVARIANT_TOLERANCE),
            }
        )
    columns = [
        "metric",
        "n_runs",
        "n",
        "max_abs_change",
        "max_rel_change",
        "median_rel_change",
        "max_function_gap",
        "invariant",
    ]
    return pd.DataFrame(rows, columns=columns)


def tables(
    runs: list[Run], profile_paths: list[str], cka_paths: list[str], reparam_paths: list[str] = ()
) -> dict[str, pd.DataFrame]:
    """Every truncation table from the per-run profiles and per-cell CKA and reparametrisation files (no torch
    needed).

    layer_profiles: all runs and states with config columns; layer_profile_summary: mean, std, n and 95% CI
    over seeds per cell, state, cut and metric; encoding_locus: per trained run and criterion;
    encoding_locus_summary: its offsets over seeds; cka_matrices: the CKA rows with seed_a's config columns;
    reparam: per run, cut and metric the model against its function-preserving twin, with config columns;
    reparam_summary: per metric the largest change over runs and cuts.
    """
    profiles = with_config(runs, [with_state(pd.read_csv(p)) for p in profile_paths])
    cut_cols = ["cut", "layer", "side", "relative_depth"]
    summary = stats.summarize(profiles, [*CELL_COLUMNS, "state", *cut_cols, "metric"])
    locus = with_config(runs, [encoding_locus(profiles[PROFILE_COLUMNS])])
    long = locus.drop(columns="value").melt(
        id_vars=[*CELL_COLUMNS, "locus", "metric"],
        value_vars=["offset", "relative_offset"],
        var_name="measure",
        value_name="value",
    )
    locus_summary = stats.summarize(long, [*CELL_COLUMNS, "locus", "metric", "measure"])
    by_cell = {run_cell(run): run for run in runs}
    frames = []
    for path in cka_paths:
        cka = pd.read_csv(path)
        cell = cka["cell"].iloc[0]
        if cell not in by_cell:
            continue
        frames.append(cka.assign(run_id=cell + "/s" + cka["seed_a"].astype(str)).drop(columns="cell"))
    cka_table = with_config(runs, frames)
    ids = {run["run_id"] for run in runs}
    reparam = [frame for frame in (pd.read_csv(p) for p in reparam_paths) if not frame.empty]
    reparam = [frame[frame["run_id"].isin(ids)] for frame in reparam]
    reparam = with_config(runs, reparam or [pd.DataFrame(columns=REPARAM_COLUMNS)])
    return {
        "profiles": profiles,
        "summary": summary,
        "locus": locus,
        "locus_summary": locus_summary,
        "cka": cka_table,
        "reparam": reparam,
        "reparam_summary": reparam_summary(reparam),
    }
