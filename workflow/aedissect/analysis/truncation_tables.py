"""The truncation tables: every run's layer profile with its config, the summaries over seeds, the encoding loci.

Read from the files the truncate jobs (``aedissect.nets.probes``) wrote; pandas only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedissect.analysis import stats
from aedissect.analysis.aggregate import CELL_COLUMNS, with_config
from aedissect.config import run_cell

# the per-run layer profile the truncate job writes (long format: one row per cut and metric)
PROFILE_COLUMNS = ["run_id", "cut", "layer", "side", "relative_depth", "metric", "value"]
# encoding-locus criteria: (name, metric, argmin or argmax, exclude the bottleneck cut itself)
LOCUS_CRITERIA = (
    ("twonn_min", "twonn", "min", False),
    ("pr_min", "participation_ratio", "min", False),
    ("cka_bottleneck_max", "cka_bottleneck", "max", True),
)


def encoding_locus(profiles: pd.DataFrame) -> pd.DataFrame:
    """Per run and criterion: the cut where it is reached and its offset from the bottleneck.

    ``offset`` is in layers (cut - bottleneck cut; negative inside the encoder, positive inside the
    decoder), ``relative_offset`` in relative depth. Ties go to the cut nearest the bottleneck.
    """
    rows = []
    for rid, run in profiles.groupby("run_id", sort=False):
        bn = run[run["side"] == "bottleneck"].iloc[0]
        for name, metric, how, skip_bottleneck in LOCUS_CRITERIA:
            sel = run[run["metric"] == metric].dropna(subset=["value"])
            if skip_bottleneck:
                sel = sel[sel["side"] != "bottleneck"]
            if sel.empty:
                continue
            best = sel["value"].min() if how == "min" else sel["value"].max()
            ties = sel[np.isclose(sel["value"], best, rtol=1e-12, atol=1e-12)]
            row = ties.loc[(ties["cut"] - bn["cut"]).abs().idxmin()]
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


def tables(runs: list[dict], profile_paths: list[str], cka_paths: list[str]) -> dict[str, pd.DataFrame]:
    """Every truncation table from the per-run profiles and per-cell CKA files (no torch needed).

    layer_profiles: all runs with config columns; layer_profile_summary: mean, std, n and 95% CI over
    seeds per cell, cut and metric; encoding_locus: per run and criterion; encoding_locus_summary: its
    offsets over seeds; cka_matrices: the CKA rows with seed_a's config columns.
    """
    profiles = with_config(runs, [pd.read_csv(p) for p in profile_paths])
    cut_cols = ["cut", "layer", "side", "relative_depth"]
    summary = stats.summarize(profiles, [*CELL_COLUMNS, *cut_cols, "metric"])
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
    return {
        "profiles": profiles,
        "summary": summary,
        "locus": locus,
        "locus_summary": locus_summary,
        "cka": cka_table,
    }
