"""R1's per-model quantity: where compression completes, in layers from the bottleneck, from the layer profiles'
TwoNN dimension (with its standard errors where the profile has them) and participation ratio. pandas only."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_TOLERANCE = 0.10
# TwoNN completion with standard errors: within this many combined SEs of the minimum
SE_FACTOR = 2.0

# truncation metric name (layer_profiles.csv) -> short name used in the quantities; for TwoNN the first of
# TWONN_SOURCES a run has is used, with TWONN_SE as its standard error where present
PROFILE_METRICS = {"twonn": "twonn", "participation_ratio": "pr"}
TWONN_SOURCES = ("twonn_mle", "twonn")
TWONN_SE = "twonn_mle_se"


def completion_cut(
    cuts, values, tolerance: float = DEFAULT_TOLERANCE, se=None, se_factor: float = SE_FACTOR
) -> tuple[int, int]:
    """(first cut close to the minimum, cut of the minimum), over the given cuts in depth order.

    Close: within ``se_factor`` combined standard errors sqrt(se_c^2 + se_min^2) of the minimum when ``se`` (one
    per cut) is given and finite at the minimum, else within ``tolerance`` (relative) of it; a cut whose own SE is
    not finite falls back to the tolerance.
    """
    order = np.argsort(np.asarray(cuts))
    cuts = np.asarray(cuts)[order]
    values = np.asarray(values, dtype=float)[order]
    keep = np.isfinite(values)
    if not keep.any():
        raise ValueError("no finite values")
    cuts, values = cuts[keep], values[keep]
    low, lowest = values.min(), int(np.argmin(values))
    within = values <= low + tolerance * abs(low)
    if se is not None:
        se = np.asarray(se, dtype=float)[order][keep]
        if np.isfinite(se[lowest]):
            combined = np.sqrt(se**2 + se[lowest] ** 2)
            within = np.where(np.isfinite(se), values <= low + se_factor * combined, within)
    return int(cuts[np.argmax(within)]), int(cuts[lowest])


def trained_profiles(profiles: pd.DataFrame) -> pd.DataFrame:
    """The profiles of the trained networks: rows with ``state == "trained"`` where the table has a ``state``."""
    if "state" in profiles.columns:
        return profiles[profiles["state"].astype(str) == "trained"]
    return profiles


def completion_rule(profiles: pd.DataFrame | None) -> str:
    """``se`` if TwoNN completion uses the MLE's standard errors (the profiles have ``twonn_mle_se``), else
    ``tolerance``."""
    if profiles is None:
        return "tolerance"
    metrics = set(trained_profiles(profiles)["metric"].unique())
    return "se" if {TWONN_SOURCES[0], TWONN_SE} <= metrics else "tolerance"


def compression_offsets(
    profiles: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE, use_se: bool = True, se_factor: float = SE_FACTOR
) -> pd.DataFrame:
    """Per run and metric (TwoNN, PR): completion and minimum offsets relative to the bottleneck cut.

    Only the hidden cuts 1..L-1 count: the input and the output are the data, not a compression. TwoNN is read
    from ``twonn_mle`` where the run has it (with ``twonn_mle_se``: the SE rule, unless ``use_se`` is False),
    else from ``twonn``; the participation ratio always uses ``tolerance``.
    """
    trained = trained_profiles(profiles)
    bottleneck_cut = trained.loc[trained["side"] == "bottleneck"].groupby("run_id", sort=False)["cut"].first()
    last_cut = trained.groupby("run_id", sort=False)["cut"].max()
    # only the metrics read below, averaged per cut in one pass: the table holds many more, and the sensitivity
    # sweep calls this once per setting (per run and metric, a groupby each took 20 s of the findings job)
    wanted = trained[trained["metric"].astype(str).isin(("participation_ratio", *TWONN_SOURCES, TWONN_SE))]
    hidden = wanted[(wanted["cut"] > 0) & (wanted["cut"] < wanted["run_id"].map(last_cut))]
    means = hidden.assign(metric=hidden["metric"].astype(str)).groupby(["run_id", "metric", "cut"])["value"].mean()
    per_run: dict = {}
    for (run_id, metric), per_cut in means.groupby(level=["run_id", "metric"], sort=False):
        per_run.setdefault(run_id, {})[metric] = per_cut.droplevel(["run_id", "metric"])
    rows = []
    for run_id in last_cut.index:
        if run_id not in bottleneck_cut.index:
            continue
        b = int(bottleneck_cut[run_id])
        per_metric = per_run.get(run_id, {})
        usable = {m: v for m, v in per_metric.items() if np.isfinite(v.to_numpy(dtype=float)).any()}
        sources = {"pr": "participation_ratio", "twonn": next((m for m in TWONN_SOURCES if m in usable), None)}
        for kind in ("pr", "twonn"):
            name = sources[kind]
            if name not in usable:
                continue
            per_cut = usable[name]
            se = None
            if kind == "twonn" and name == TWONN_SOURCES[0] and use_se and TWONN_SE in per_metric:
                se = per_metric[TWONN_SE].reindex(per_cut.index).to_numpy(dtype=float)
            done, lowest = completion_cut(per_cut.index.to_numpy(), per_cut.to_numpy(), tolerance, se, se_factor)
            rows.append({"run_id": run_id, "quantity": f"{kind}_completion_offset", "value": done - b})
            rows.append({"run_id": run_id, "quantity": f"{kind}_min_offset", "value": lowest - b})
    return pd.DataFrame(rows, columns=["run_id", "quantity", "value"])
