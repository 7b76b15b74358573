"""The rules calibrated on phantoms: what each rule says of each network whose answer is known (rule phantoms,
``aedissect.nets.phantoms``), against what it must say; only a rule that gives every phantom its answer enters a
verdict.

Per-model outcomes, computed from the same tables and by the same functions as for the trained networks:

- ``compression`` (R1): the TwoNN completion offset (``compression.compression_offsets``), ``encoder`` if <= 0;
- ``abstraction`` (RA): the abstraction gain (``abstraction_gains``), ``decoder`` if above ``ABSTRACTION_MARGIN``;
- ``work`` (R2): the linear phantom's Shapley shares over seeds (closed form), its t-interval read by
  ``rule_work``: ``encoder`` above 0.5, ``decoder`` below, ``even`` containing it.

pandas only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedissect.analysis.compression import DEFAULT_TOLERANCE, compression_offsets
from aedissect.analysis.stats import mean_ci
from aedissect.formatting import number

# A decoder layer holds the known factors "more abstractly" than the code when its linear factor R² exceeds the
# code's by more than this. Fixed from the phantoms before any study's gains were looked at: a decoder that only
# renders the code (the linear phantoms: its layers are linear images of the code, gain 0 up to the ridge probe's
# regularisation; the planted encoder: 0.001) stays far below it, the un-mixing phantom (0.08) far above.
ABSTRACTION_MARGIN = 0.02
ABSTRACTION_METRIC = "factor_r2_linear"
RULES = ("compression", "abstraction", "work")
RULE_NAMES = {"compression": "R1 compression", "abstraction": "RA abstraction", "work": "R2 work"}
PHANTOMS_HEADING = "## Phantoms: the rules on networks whose answer is known"
PHANTOM_COLUMNS = ["rule", "dataset", "phantom", "expected", "got", "value", "match", "description"]


def abstraction_gains(profiles: pd.DataFrame, column: str = "run_id") -> pd.DataFrame:
    """Per model (``column``): ``abstraction_gain`` = the largest linear factor R² over the decoder's hidden cuts
    minus the R² at the bottleneck cut (trained profiles only). A model without a hidden decoder layer, or without
    known factors, has none: the rule cannot see the decoder go on encoding where it has no layer to do it in."""
    rows = profiles[profiles["metric"].astype(str) == ABSTRACTION_METRIC]
    if "state" in rows.columns:
        rows = rows[rows["state"].astype(str) == "trained"]
    out = []
    for key, run in rows.groupby(column, sort=False):
        last = run["cut"].max()
        code = run.loc[run["side"] == "bottleneck", "value"]
        decoder = run.loc[(run["side"] == "decoder") & (run["cut"] < last), "value"].dropna()
        if code.empty or decoder.empty or not np.isfinite(code.iloc[0]):
            continue
        out.append({column: key, "quantity": "abstraction_gain", "value": float(decoder.max() - code.iloc[0])})
    return pd.DataFrame(out, columns=[column, "quantity", "value"])


def rule_quantities(profiles: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> list[pd.DataFrame]:
    """The per-run quantities R1 and RA read from layer profiles (``run_id, quantity, value``): the compression
    offsets (``compression_offsets``), the abstraction gain and RA's indicator ``abstraction_decoder`` (the gain
    above ``ABSTRACTION_MARGIN``)."""
    gains = abstraction_gains(profiles)
    in_decoder = (gains["value"] > ABSTRACTION_MARGIN).astype(float)
    return [
        compression_offsets(profiles, tolerance),
        gains,
        gains.assign(quantity="abstraction_decoder", value=in_decoder),
    ]


def rule_work(row: dict | None) -> str:
    """R2: where the encoder share's 95% CI lies relative to 0.5."""
    if row is None or not np.isfinite(row["ci95_low"]):
        return "no data"
    if row["ci95_low"] > 0.5:
        return "encoder"
    if row["ci95_high"] < 0.5:
        return "decoder"
    return "even"


def abstraction_outcome(gain: float, margin: float = ABSTRACTION_MARGIN) -> str:
    return "decoder" if gain > margin else "encoder"


def compression_outcome(offset: float) -> str:
    return "encoder" if offset <= 0 else "decoder"


def _base_name(phantom: str) -> str:
    return phantom.split("/")[0]


def phantom_table(
    profiles: pd.DataFrame, work: pd.DataFrame, listing: pd.DataFrame, setting: tuple[str, object] | None = None
) -> pd.DataFrame:
    """phantoms.csv: per rule, data set and phantom (``listing``: what each must give) what the rule gave (``got``),
    the number it read (``value``) and whether they agree (``match``). ``setting``: one of the sensitivity sweep's
    rule variants instead of the rule itself, ("R1 band", tolerance: 0 for the minimum itself), ("RA margin",
    margin) or ("R2 design", "textbook": the leave-one-out share)."""
    name, value = setting or ("", None)
    profiles = profiles.assign(run_id=profiles["dataset"].astype(str) + "|" + profiles["phantom"].astype(str))
    band = {"tolerance": float(value), "use_se": False} if name == "R1 band" else {}
    offsets = compression_offsets(profiles, **band)
    offsets = offsets[offsets["quantity"] == "twonn_completion_offset"].set_index("run_id")["value"]
    gains = abstraction_gains(profiles).set_index("run_id")["value"]
    margin = float(value) if name == "RA margin" else ABSTRACTION_MARGIN
    share = "loo_share" if name == "R2 design" else "share"
    shares = {}
    for (dataset, phantom), rows in work.groupby(["dataset", "phantom"], sort=False):
        shares[dataset, phantom] = mean_ci(rows[share].to_numpy(dtype=float))
    out = []
    for row in listing.to_dict("records"):
        key = f"{row['dataset']}|{row['phantom']}"
        got, value = "no data", np.nan
        if row["rule"] == "compression" and key in offsets.index:
            value = float(offsets[key])
            got = compression_outcome(value)
        elif row["rule"] == "abstraction" and key in gains.index:
            value = float(gains[key])
            got = abstraction_outcome(value, margin)
        elif row["rule"] == "work":
            # the share is computed from the init draws and the optimum's loss, both blind to the gauge, so a
            # reparametrised twin has its original's
            summary = shares.get((row["dataset"], _base_name(row["phantom"])))
            if summary is not None:
                value, got = summary["mean"], rule_work(summary)
        out.append(
            {"rule": row["rule"], "dataset": row["dataset"], "phantom": row["phantom"], "expected": row["expected"]}
            | {"got": got, "value": value, "match": got == row["expected"], "description": row["description"]}
        )
    order = {rule: i for i, rule in enumerate(RULES)}
    table = pd.DataFrame(out, columns=PHANTOM_COLUMNS)
    return table.sort_values(["rule", "dataset"], key=lambda c: c.map(order) if c.name == "rule" else c, kind="stable")


# the sensitivity sweep's settings that vary a rule, and the rule each varies
SETTING_RULES = {"R1 band": "compression", "RA margin": "abstraction", "R2 design": "work"}


def setting_checks(
    profiles: pd.DataFrame | None, work: pd.DataFrame | None, listing: pd.DataFrame | None, settings
) -> dict[tuple[str, object], str]:
    """Per (setting, value) of the sensitivity sweep that varies a rule: "" where that variant of the rule still gives
    every phantom its answer, else why not. A variant that misses a phantom is no alternative the verdict should
    survive, so it does not make a verdict fragile (``findings.mark_fragile``). Without phantoms every variant fails."""
    out = {}
    for name, value in settings:
        rule = SETTING_RULES[name]
        if profiles is None:
            out[name, value] = "no phantom checks it"
            continue
        out[name, value] = calibrated(phantom_table(profiles, work, listing, (name, value)))[rule]
    return out


def calibrated(table: pd.DataFrame | None) -> dict[str, str]:
    """Per rule: "" where it gives every phantom its answer (it may enter a verdict), else why not (the phantoms it
    misses). Without a phantom table every rule is uncalibrated."""
    out = {}
    for rule in RULES:
        rows = table[table["rule"] == rule] if table is not None else pd.DataFrame()
        if rows.empty:
            out[rule] = "no phantom checks it"
            continue
        missed = rows[~rows["match"].astype(bool)]
        out[rule] = "; ".join(
            f"{r.phantom} on {r.dataset}: expected {r.expected}, got {r.got} ({number(r.value)})"
            for r in missed.itertuples()
        )
    return out


def phantoms_markdown(table: pd.DataFrame | None, calibration: dict[str, str]) -> list[str]:
    """The section of findings.md after the answer: every rule on every phantom, expected against got, which rules enter
    the verdicts."""
    lines = [PHANTOMS_HEADING, ""]
    if table is None:
        return [*lines, "No phantoms were built (the workflow has no `phantoms` rule): no rule enters a verdict.", ""]
    lines += [
        "Each rule is first applied to networks built so that the answer is known (`results/paper/phantoms.csv`; "
        "`workflow/aedissect/nets/phantoms.py`): the linear AE and VAE at their optima (PCA, pPCA) behind a random "
        "gauge, planted networks on data with known factors, and each one's function-preserving twin. A rule enters "
        "the verdicts only if it gives every phantom its answer.",
        "",
        "| rule | data | phantom | expected | got | value |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        mark = "" if r.match else " ✗"
        lines.append(f"| {RULE_NAMES[r.rule]} | {r.dataset} | {r.phantom} | {r.expected} | {r.got}{mark} | "
                     f"{number(r.value)} |")  # fmt: skip
    lines.append("")
    for rule in RULES:
        why = calibration.get(rule, "no phantom checks it")
        verdict = "enters the verdicts" if not why else f"is left out of the verdicts: {why}"
        lines.append(f"- **{RULE_NAMES[rule]}** {verdict}.")
    return [*lines, ""]
