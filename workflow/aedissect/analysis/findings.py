"""The answer, computed: per-run quantities, their summaries over seeds and the verdict rules.

Everything here reads the tidy tables of the study (never per-run files, never hand-written numbers):

- ``layer_profiles.csv`` (truncation): ``run_id, cut, side, metric, value`` (+ config columns); the
  bottleneck cut is the row with ``side == "bottleneck"``.
- ``freeze.csv`` (interventions): ``run_id`` of the base run, the freeze spec and the test loss.
- ``layer_criticality.csv``: ``run_id``, layer, intervention and whether the layer is critical.
- ``stitching.csv``: a pair of models A -> B and the stitching penalty.
- ``train_metrics.csv``: the normally trained loss of every run.

Per-run quantities (``quantities()``, one row per run and quantity):

``twonn_completion_offset`` / ``pr_completion_offset``
    Where compression completes, in layers relative to the bottleneck cut b: the first cut c (from the
    input) among the hidden cuts 1..L-1 whose value is within ``tolerance`` (relative) of the run's minimum
    over those cuts, minus b. Negative: inside the encoder; 0: at the bottleneck; positive: in the decoder.
``twonn_min_offset`` / ``pr_min_offset``
    The cut of the minimum itself, minus b (the "encoding locus" of the truncation issue).
``encoder_share``
    (L_enc_frozen - L_full) / ((L_enc_frozen - L_full) + (L_dec_frozen - L_full)) from the freezing runs, the
    frozen decoder's output bias left to train (spec ``decoder+bias``): what R2 uses.
``encoder_share_frozen_output_bias``
    The same with the output bias frozen too (spec ``decoder``, the textbook freeze): the control. A bias frozen
    at its random init cannot fit the data's mean, which charges the frozen decoder a loss that is no side's work.
``critical_encoder_fraction``
    Of the layers found critical (re-initialisation), the fraction that sit in the encoder.
``stitch_penalty``
    Mean stitching penalty at the bottleneck of the run as B, over its partners A of the same
    architecture and bottleneck (other seeds).

Summaries (``summarize_groups()``): for each data set x kind x family and quantity, each seed's value
is first averaged over the family's architectures and bottlenecks, then mean, std, n (seeds) and the
Student-t 95% CI are taken over seeds; ``n_runs`` and the counts of runs with offset < 0, = 0, > 0 are kept.

Verdict rules (``verdict()``), per data set x kind x family, with N the runs of the group:

R1 compression: k = runs whose TwoNN completion offset is <= 0 (compression done by the bottleneck).
   ``encoder`` if k >= majority * N; ``decoder`` if N - k >= majority * N; else ``mixed``; ``no data``.
R2 work: the encoder share's 95% CI over seeds. ``encoder`` if its lower end > 0.5; ``decoder`` if its
   upper end < 0.5; ``even`` if it contains 0.5; ``no data`` if there is no CI (fewer than 2 seeds).
Verdict: ``yes`` (the encoder encodes) if R1 and R2 are both ``encoder``; ``no`` if either is ``decoder``;
   ``partly`` if exactly one is ``encoder`` and the other ``even``/``mixed``/``no data``; else ``undecided``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedissect.analysis.stats import mean_ci
from aedissect.config import FAMILIES
from aedissect.formatting import estimate

GROUP = ["dataset", "kind", "family"]
CELL = ["dataset", "kind", "family", "arch", "bottleneck"]
DEFAULT_TOLERANCE = 0.10
DEFAULT_MAJORITY = 0.66
OFFSET_QUANTITIES = ["twonn_completion_offset", "twonn_min_offset", "pr_completion_offset", "pr_min_offset"]
QUANTITY_LABELS = {
    "twonn_completion_offset": "TwoNN: compression completes (layers from bottleneck)",
    "twonn_min_offset": "TwoNN minimum (layers from bottleneck)",
    "pr_completion_offset": "PR: compression completes (layers from bottleneck)",
    "pr_min_offset": "PR minimum (layers from bottleneck)",
    "encoder_share": "encoder share of the work",
    "encoder_share_frozen_output_bias": "encoder share, output bias frozen too (control)",
    "critical_encoder_fraction": "critical layers in the encoder (fraction)",
    "stitch_penalty": "stitching penalty at the bottleneck",
    "test_mse": "test MSE per element",
}


# truncation metric name (layer_profiles.csv) -> short name used in the quantities
PROFILE_METRICS = {"twonn": "twonn", "participation_ratio": "pr"}


def _metric_kind(name: str) -> str | None:
    """Map a truncation metric name to twonn / pr (None for the others)."""
    return PROFILE_METRICS.get(name)


def completion_cut(cuts, values, tolerance: float = DEFAULT_TOLERANCE) -> tuple[int, int]:
    """(first cut within ``tolerance`` of the minimum, cut of the minimum), over the given cuts in depth order."""
    order = np.argsort(np.asarray(cuts))
    cuts = np.asarray(cuts)[order]
    values = np.asarray(values, dtype=float)[order]
    keep = np.isfinite(values)
    if not keep.any():
        raise ValueError("no finite values")
    cuts, values = cuts[keep], values[keep]
    low = values.min()
    within = values <= low + tolerance * abs(low)
    return int(cuts[np.argmax(within)]), int(cuts[np.argmin(values)])


def compression_offsets(profiles: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """Per run and metric (TwoNN, PR): completion and minimum offsets relative to the bottleneck cut.

    Only the hidden cuts 1..L-1 count: the input and the output are the data, not a compression.
    """
    rows = []
    profiles = profiles[profiles["state"] == "trained"] if "state" in profiles else profiles  # not the init rows
    for run_id, run in profiles.groupby("run_id", sort=False):
        bottleneck = run.loc[run["side"] == "bottleneck", "cut"]
        if bottleneck.empty:
            continue
        b = int(bottleneck.iloc[0])
        last = int(run["cut"].max())
        hidden = run[(run["cut"] > 0) & (run["cut"] < last)]
        for metric, series in hidden.groupby("metric", sort=True):
            kind = _metric_kind(str(metric))
            if kind is None:
                continue
            per_cut = series.groupby("cut")["value"].mean()
            if not np.isfinite(per_cut.to_numpy()).any():
                continue
            done, lowest = completion_cut(per_cut.index.to_numpy(), per_cut.to_numpy(), tolerance)
            rows.append({"run_id": run_id, "quantity": f"{kind}_completion_offset", "value": done - b})
            rows.append({"run_id": run_id, "quantity": f"{kind}_min_offset", "value": lowest - b})
    return pd.DataFrame(rows, columns=["run_id", "quantity", "value"])


def criticality_rows(table: pd.DataFrame, intervention: str = "reinit") -> pd.DataFrame:
    """layer_criticality.csv -> ``run_id, layer, side, critical`` for one intervention (layer = its name)."""
    rows = table[table["intervention"] == intervention]
    return pd.DataFrame(
        {
            "run_id": rows["run_id"],
            "layer": rows["layer_name"] if "layer_name" in rows else rows["layer"],
            "side": rows["side"],
            "critical": rows["critical"].astype(str).str.lower().isin(["true", "1"]),
        }
    )


def stitch_rows(table: pd.DataFrame) -> pd.DataFrame:
    """stitching.csv -> ``run_id_a, run_id_b, penalty`` of the trained stitches (controls dropped)."""
    rows = table[table["stitch"] == "trained"] if "stitch" in table else table
    a = rows["run_id_a"] if "run_id_a" in rows else rows["a_run_id"]
    b = rows["run_id_b"] if "run_id_b" in rows else rows["run_id"]
    return pd.DataFrame({"run_id_a": a, "run_id_b": b, "penalty": rows["penalty"]})


# quantity of findings.md -> the ``output_bias`` of the frozen decoder in encoder_share.csv
SHARE_QUANTITIES = {"trained": "encoder_share", "frozen": "encoder_share_frozen_output_bias"}


def encoder_shares(share: pd.DataFrame, metric: str = "test_loss") -> pd.DataFrame:
    """encoder_share.csv -> ``run_id, quantity, value``: the shares of the run's own objective (``metric``).

    ``test_loss`` is each run's own objective (MSE for the AE, -ELBO for the VAE), the loss the share is about; the
    share itself is computed in one place, ``intervention_tables.encoder_share``.
    """
    rows = share[(share["metric"] == metric) & share["output_bias"].isin(list(SHARE_QUANTITIES))]
    return pd.DataFrame(
        {
            "run_id": rows["run_id"].to_numpy(),
            "quantity": rows["output_bias"].map(SHARE_QUANTITIES).to_numpy(),
            "value": rows["value"].to_numpy(),
        }
    )


def critical_layers(criticality: pd.DataFrame) -> pd.DataFrame:
    """Per run, the fraction of critical layers in the encoder (layers up to and including the bottleneck).

    Expects ``run_id, layer, side, critical`` rows of one intervention (re-initialisation); a run with no
    critical layer gets NaN.
    """
    rows = []
    for run_id, run in criticality.groupby("run_id", sort=False):
        critical = run[run["critical"].astype(bool)]
        encoder = critical["side"].isin(["encoder", "bottleneck"]).sum()
        rows.append(
            {
                "run_id": run_id,
                "quantity": "critical_encoder_fraction",
                "value": encoder / len(critical) if len(critical) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "quantity", "value"])


def critical_layer_text(criticality: pd.DataFrame, runs: pd.DataFrame, majority: float = DEFAULT_MAJORITY) -> dict:
    """Per (dataset, kind, family): "arch: layer (k/n), ..." for layers critical in at least ``majority`` of seeds."""
    table = criticality.merge(runs[["run_id", *CELL]], on="run_id", how="left")
    out = {}
    for key, group in table.groupby(GROUP, sort=True):
        parts = []
        for arch, per_arch in group.groupby("arch", sort=True):
            n = per_arch["run_id"].nunique()
            counts = per_arch[per_arch["critical"].astype(bool)].groupby("layer", sort=False)["run_id"].nunique()
            names = [f"{layer} ({k}/{n})" for layer, k in counts.items() if k >= majority * n]
            parts.append(f"{arch}: {', '.join(names) if names else 'none'}")
        out[key] = "; ".join(parts)
    return out


def stitch_penalties(stitching: pd.DataFrame) -> pd.DataFrame:
    """Per run B, the mean penalty over stitches from other seeds of the same architecture and bottleneck.

    Expects ``run_id_a, run_id_b, penalty`` (trained stitches only: controls filtered out by the caller).
    """
    same = stitching[stitching["run_id_a"] != stitching["run_id_b"]]
    same = same[same["run_id_a"].str.rsplit("/", n=1).str[0] == same["run_id_b"].str.rsplit("/", n=1).str[0]]
    values = same.groupby("run_id_b", sort=False)["penalty"].mean()
    return pd.DataFrame({"run_id": values.index, "quantity": "stitch_penalty", "value": values.to_numpy()})


def quantities(runs: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The per-run quantities (long) joined to the runs' config columns."""
    body = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    if body is None:
        body = pd.DataFrame(columns=["run_id", "quantity", "value"])
    return runs.merge(body, on="run_id", how="inner", validate="one_to_many")


def summarize_groups(per_run: pd.DataFrame, by: list[str] = GROUP) -> pd.DataFrame:
    """Per group and quantity: mean, std, n (seeds) and 95% CI over per-seed means, plus run counts."""
    rows = []
    for key, group in per_run.groupby([*by, "quantity"], sort=True):
        per_seed = group.groupby("seed")["value"].mean()
        values = group["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        row = dict(zip([*by, "quantity"], key, strict=True)) | mean_ci(per_seed.to_numpy())
        row |= {
            "n_runs": finite.size,
            "n_below": int((finite < 0).sum()),
            "n_at": int((finite == 0).sum()),
            "n_above": int((finite > 0).sum()),
        }
        rows.append(row)
    columns = [*by, "quantity", "mean", "std", "n", "ci95_low", "ci95_high", "n_runs", "n_below", "n_at", "n_above"]
    return pd.DataFrame(rows, columns=columns)


def _get(summary: pd.DataFrame, quantity: str) -> dict | None:
    rows = summary[summary["quantity"] == quantity]
    return rows.iloc[0].to_dict() if len(rows) else None


def rule_compression(row: dict | None, majority: float = DEFAULT_MAJORITY) -> tuple[str, int, int]:
    """R1: (outcome, k runs with offset <= 0, N runs)."""
    if row is None or not row["n_runs"]:
        return "no data", 0, 0
    k, n = int(row["n_below"] + row["n_at"]), int(row["n_runs"])
    if k >= majority * n:
        return "encoder", k, n
    if n - k >= majority * n:
        return "decoder", k, n
    return "mixed", k, n


def rule_work(row: dict | None) -> str:
    """R2: where the encoder share's 95% CI lies relative to 0.5."""
    if row is None or not np.isfinite(row["ci95_low"]):
        return "no data"
    if row["ci95_low"] > 0.5:
        return "encoder"
    if row["ci95_high"] < 0.5:
        return "decoder"
    return "even"


def combine(compression: str, work: str) -> str:
    outcomes = {compression, work}
    if "decoder" in outcomes:
        return "no"
    if outcomes == {"encoder"}:
        return "yes"
    if "encoder" in outcomes:
        return "partly"
    return "undecided"


VERDICT_WORDS = {
    "yes": "The encoder is what encodes",
    "partly": "The encoder encodes only in part",
    "no": "Not the encoder alone",
    "undecided": "Undecided",
}


def fmt_ci(row: dict | None) -> str:
    """A summary over seeds in words (``formatting.estimate``); ``n/a`` where the quantity was not measured."""
    if row is None:
        return "n/a"
    if not row["n"]:
        return "n/a (no model has a value)"
    return estimate(row)


def verdict(summary: pd.DataFrame, majority: float = DEFAULT_MAJORITY) -> dict:
    """Apply R1 and R2 to one group's summary rows; returns the outcomes and the verdict sentence."""
    compression, k, n = rule_compression(_get(summary, "twonn_completion_offset"), majority)
    share = _get(summary, "encoder_share")
    work = rule_work(share)
    result = combine(compression, work)
    clauses = []
    if n:
        clauses.append(f"compression (TwoNN) completes inside the encoder or at the bottleneck in {k} of {n} models")
    pr_outcome, k_pr, n_pr = rule_compression(_get(summary, "pr_completion_offset"), majority)
    if n_pr:
        clauses.append(f"the participation ratio does in {k_pr} of {n_pr}")
    if share is not None:
        clauses.append(f"the encoder does a share of {fmt_ci(share)} of the work (R2: {work})")
    control = _get(summary, "encoder_share_frozen_output_bias")
    if control is not None:
        clauses.append(f"with the output bias frozen too, the share would be {fmt_ci(control)}")
    sentence = f"{VERDICT_WORDS[result]}: " + ("; ".join(clauses) if clauses else "no measurements") + "."
    return {
        "compression": compression,
        "compression_k": k,
        "compression_n": n,
        "pr_compression": pr_outcome,
        "work": work,
        "verdict": result,
        "sentence": sentence,
    }


def verdicts(summary: pd.DataFrame, majority: float = DEFAULT_MAJORITY) -> pd.DataFrame:
    rows = []
    for key, group in summary.groupby(GROUP, sort=True):
        rows.append(dict(zip(GROUP, key, strict=True)) | verdict(group, majority))
    return pd.DataFrame(
        rows,
        columns=[
            *GROUP,
            "compression",
            "compression_k",
            "compression_n",
            "pr_compression",
            "work",
            "verdict",
            "sentence",
        ],
    )


RULES_TEXT = """\
Verdict rules (workflow/aedissect/analysis/findings.py), per data set x model kind x architecture family, N = models
(architectures x bottlenecks x seeds) of the group:

- R1 compression: k = models whose TwoNN dimension comes within {tol:.0%} of its minimum over the hidden cuts at
  or before the bottleneck cut (input and output cuts excluded, so it holds trivially for an architecture without
  hidden decoder layers). `encoder` if k >= {maj:.2f} N, `decoder` if N - k >= {maj:.2f} N, else `mixed`.
- R2 work: the 95% CI over seeds of the encoder share (L_enc_frozen - L) / ((L_enc_frozen - L) + (L_dec_frozen - L)).
  `encoder` if it lies above 0.5, `decoder` if below, `even` if it contains 0.5.
- Verdict: `yes` if R1 and R2 are both `encoder`; `no` if either is `decoder`; `partly` if one is `encoder`;
  else `undecided`.
"""


def markdown(
    summary: pd.DataFrame,
    verdict_table: pd.DataFrame,
    critical: dict,
    tolerance: float,
    majority: float,
    title: str = "Findings",
) -> str:
    """findings.md: the verdict per family, then every number with n and 95% CI, then the rules."""
    lines = [f"# {title}", "", "Generated from the result tables by `snakemake paper`; do not edit.", ""]
    for (dataset, kind), block in verdict_table.groupby(["dataset", "kind"], sort=True):
        lines += [f"## {dataset}, {kind.upper()}", ""]
        for row in block.itertuples():
            group = summary[
                (summary["dataset"] == dataset) & (summary["kind"] == kind) & (summary["family"] == row.family)
            ]
            lines.append(f"**{row.family}**: {row.sentence}")
            lines.append("")
            for quantity, label in QUANTITY_LABELS.items():
                q = _get(group, quantity)
                if q is None:
                    continue
                extra = ""
                if quantity in OFFSET_QUANTITIES:
                    extra = (
                        f"; models before / at / after the bottleneck: {q['n_below']} / {q['n_at']} / {q['n_above']}"
                    )
                value = fmt_ci(q)
                if quantity == "critical_encoder_fraction" and not q["n"]:
                    value = "n/a (no layer is critical in any model)"
                lines.append(f"- {label}: {value}{extra}")
            if (dataset, kind, row.family) in critical:
                lines.append(f"- critical layers (re-initialisation): {critical[(dataset, kind, row.family)]}")
            lines.append("")
    lines += ["## How the verdicts are chosen", "", RULES_TEXT.format(tol=tolerance, maj=majority)]
    return "\n".join(lines)


def front_page_rst(verdict_table: pd.DataFrame, intro: str) -> str:
    """The report's front page: the static description, then the verdicts as one small table (data set and kind by
    family), short enough to fit the first screen: Snakemake's report centres its front page vertically, so a
    page taller than the window loses its top, title included. The numbers behind the verdicts are in findings.md,
    a report item of its own.

    Snakemake renders the page with Jinja2 first: the generated part sits in a raw block so that no name in it can
    be read as a template tag.
    """
    families = [f for f in FAMILIES if f in set(verdict_table["family"])]
    rows = [["data set", "model", *families]]
    for (dataset, kind), block in verdict_table.groupby(["dataset", "kind"], sort=True):
        by_family = block.set_index("family")["verdict"]
        rows.append([dataset, kind.upper(), *(by_family.get(f, "n/a") for f in families)])
    table = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        table += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    legend = (
        "**yes**: R1 and R2 both point to the encoder; **partly**: one does; **no**: either points to the decoder; "
        "**undecided**: neither. Each verdict with its numbers: **Findings**."
    )
    title = "Is the encoder what encodes?"
    out = [intro.rstrip(), "", "{% raw %}", title, "-" * len(title), "", *table, "", legend, "{% endraw %}"]
    return "\n".join(out) + "\n"
