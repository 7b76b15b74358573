"""The answer, computed: per-run quantities, their summaries over seeds, the verdict rules, how much each verdict
depends on the rules' settings, and the controls that can suspend every verdict.

Everything here reads the tidy tables of the study (never per-run files, never hand-written numbers):

- ``layer_profiles.csv`` (truncation): ``run_id, cut, side, metric, value`` (+ config columns); the
  bottleneck cut is the row with ``side == "bottleneck"``; with a ``state`` column only ``trained`` rows count.
- ``encoder_share.csv`` (interventions): the leave-one-out encoder share per run (``output_bias``), and, where the
  table has ``method``/``design`` columns, the Shapley share too.
- ``layer_criticality.csv``: ``run_id``, layer, intervention and whether the layer is critical.
- ``stitching.csv``: a pair of models A -> B and the stitching penalty (at the bottleneck: the only cut of pairs of two
  architectures; pairs of one are stitched at every cut).
- ``swap.csv`` (optional): the swap matrix, whose family-level rows rule R3 reads (``with_swap_rule``).
- ``train_metrics.csv``: the normally trained loss of every run.
- ``controls.csv`` (optional): one row per run and control check, ``check, value, reference, ratio, threshold,
  passed, applies, note`` beside the run's config columns.

Per-run quantities (``quantities()``, one row per run and quantity):

``twonn_completion_offset`` / ``pr_completion_offset``
    Where compression completes, in layers relative to the bottleneck cut b: the first cut c (from the
    input) among the hidden cuts 1..L-1 whose value is close to the run's minimum over those cuts, minus b.
    Negative: inside the encoder; 0: at the bottleneck; positive: in the decoder. "Close": for TwoNN, when the
    profile has the maximum-likelihood estimate with its standard error (``twonn_mle``, ``twonn_mle_se``),
    within ``SE_FACTOR`` combined standard errors, sqrt(se_c^2 + se_min^2); otherwise (and always for the
    participation ratio, which has no SE) within ``tolerance`` (relative) of the minimum.
``twonn_min_offset`` / ``pr_min_offset``
    The cut of the minimum itself, minus b (the "encoding locus" of the truncation issue).
``encoder_share_shapley``
    The two-player Shapley share of the encoder (``inference.shapley_shares``), where encoder_share.csv has it.
``encoder_share``
    The leave-one-out share (L_enc_frozen - L_full) / ((L_enc_frozen - L_full) + (L_dec_frozen - L_full)) from
    the freezing runs, the frozen decoder's output bias left to train (spec ``decoder+bias``).
``param_fraction_encoder``
    The encoder's share of the architecture's parameters (its layers up to and including the bottleneck layer),
    beside the shares; share_vs_parameters.csv relates the two (``parameters_markdown``).
``encoder_share_frozen_output_bias``
    The same with the output bias frozen too (spec ``decoder``, the textbook freeze): the control. A bias frozen
    at its random init cannot fit the data's mean, which charges the frozen decoder a loss that is no side's work.
``critical_encoder_fraction`` / ``critical_bottleneck_fraction``
    Of the layers found critical (re-initialisation undoes at least ``CRITICAL_DAMAGE`` of what training gained over
    the mean predictor: normalised damage (MSE_reinit - MSE) / (MSE_mean_predictor - MSE)), the fraction before the
    bottleneck layer, and the fraction that is the bottleneck layer itself (counted on its own).
``critical_encoder_param_fraction`` / ``critical_bottleneck_param_fraction``
    The same, each critical layer weighted by its parameter count.
``stitch_penalty``
    Mean stitching penalty at the bottleneck of the run as B, over its partners A of the same
    architecture and bottleneck (other seeds).

Summaries (``summarize_groups()``): for each data set x kind x family and quantity, each seed's value
is first averaged over the family's architectures and bottlenecks, then mean, std, n (seeds) and the
Student-t 95% CI are taken over seeds; beside it, for the offsets and shares, a hierarchical bootstrap 95% CI
(architectures resampled, then seeds within each, ``inference.hierarchical_bootstrap_ci``). ``n_runs`` and the
counts of runs with offset < 0, = 0, > 0 are kept, and ``n_decisive``/``k_decisive``: the runs of architectures
with hidden layers on both sides and, of them, those with a value <= 0.

Fixed by construction: an architecture without a hidden decoder layer cannot complete compression after the
bottleneck (its offsets are <= 0 whatever it learns), one without a hidden encoder layer cannot complete it
before. R1 counts only the runs of architectures with both sides (``n_decisive``); the others are named in
``fixed_archs``, and a group with no such run has its R1 outcome ``fixed by construction`` and no verdict.

Verdict rules (``verdict()``), per data set x kind x family, with N the decisive runs of the group:

R1 compression: k = runs whose TwoNN completion offset is <= 0 (compression done by the bottleneck).
   ``encoder`` if k >= majority * N; ``decoder`` if N - k >= majority * N; else ``mixed``; ``no data``;
   ``fixed by construction`` (N = 0, the group has runs). With it, the exact binomial test of k against 1/2.
R2 work: the 95% CI over seeds of the Shapley share where there is one, else of the leave-one-out share.
   The Shapley share counts only runs whose frozen variants converged (``converged_shapley``; the verdict row
   says how many runs were left out, ``work_excluded``, and how many could not be checked, ``work_unchecked``).
   ``encoder`` if its lower end > 0.5; ``decoder`` if its upper end < 0.5; ``even`` if it contains 0.5;
   ``no data`` if there is no CI (fewer than 2 seeds; ``work_reason`` says why).
Verdict: ``yes`` (the encoder encodes) if R1 and R2 are both ``encoder``; ``no`` if either is ``decoder``;
   ``partly`` if exactly one is ``encoder`` and the other ``even``/``mixed``/``no data``; else ``undecided``.

R3 swap (``with_swap_rule()``), reported beside the verdict, not part of it: are the family's encoders
   interchangeable across the decoders of the group's other architectures (``rule_swap``)?

Then (``sensitivity()``, ``mark_fragile()``): the verdict again under every completion tolerance of
``SENSITIVITY_TOLERANCES``, majority of ``SENSITIVITY_MAJORITIES`` and with each seed left out; a verdict any of
these changes is ``fragile``. Last (``apply_controls()``): a verdict whose runs share a data set, model kind
(``CONTROL_SCOPE``) and training budget (``BUDGET``) with an applicable control check that failed is ``undecided``
(``undecided_reason``: the checks).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from aedissect.analysis.calibration import ABSTRACTION_MARGIN, rule_work
from aedissect.analysis.calibration import RULE_NAMES as CALIBRATED_NAMES
from aedissect.analysis.compression import (
    SE_FACTOR,
    compression_offsets,
)
from aedissect.analysis.intervention_tables import MATCHED_PAIR, MIN_CLUSTERS
from aedissect.analysis.stats import mean_ci
from aedissect.config import FAMILIES
from aedissect.formatting import estimate, is_constant, number
from aedissect.inference import binomial_test, clopper_pearson, hierarchical_bootstrap_ci
from aedissect.plans import CONVERGED_TOLERANCE

GROUP = ["dataset", "kind", "family"]
CELL = ["dataset", "kind", "family", "arch", "bottleneck"]
# the config columns that make a training budget: a failed control suspends every verdict at its budget ...
BUDGET = ["epochs", "batch_size", "lr"]
# ... on the same data and objective: whether a budget trains a network to its optimum depends on the data set
# and the loss (a collapsed factors VAE says nothing about the digits AEs)
CONTROL_SCOPE = ["dataset", "kind"]
# a quantity's summary over seeds: mean, spread, t-interval and hierarchical bootstrap interval, runs counted
SUMMARY_COLUMNS = ["mean", "std", "n", "ci95_low", "ci95_high", "boot95_low", "boot95_high", "n_runs"]
DEFAULT_MAJORITY = 0.66
# the unit of replication of R1's test: the models of one architecture and bottleneck share all but their seed
CELL_KEYS = ["arch", "bottleneck"]
# the sensitivity sweep: each verdict under these settings, one at a time, and with each seed left out
SENSITIVITY_TOLERANCES = (0.05, 0.10, 0.20)
SENSITIVITY_MAJORITIES = (0.6, 0.66, 0.8)
N_BOOT = 2000
FIXED = "fixed by construction"
OFFSET_QUANTITIES = ["twonn_completion_offset", "twonn_min_offset", "pr_completion_offset", "pr_min_offset"]
SHARE_QUANTITY_NAMES = ["encoder_share_shapley", "encoder_share", "encoder_share_frozen_output_bias"]
# the quantities a hierarchical bootstrap CI is reported for, beside the t-interval
BOOTSTRAP_QUANTITIES = [*OFFSET_QUANTITIES, *SHARE_QUANTITY_NAMES, "abstraction_gain"]
QUANTITY_LABELS = {
    "twonn_completion_offset": "TwoNN: compression completes (layers from bottleneck)",
    "twonn_min_offset": "TwoNN minimum (layers from bottleneck)",
    "pr_completion_offset": "PR: compression completes (layers from bottleneck)",
    "pr_min_offset": "PR minimum (layers from bottleneck)",
    "abstraction_gain": "RA: best decoder layer's linear factor R² minus the code's",
    "encoder_share_shapley": "encoder share of the work (Shapley)",
    "encoder_share": "encoder share of the work (leave-one-out)",
    "encoder_share_frozen_output_bias": "encoder share, output bias frozen too (control)",
    "param_fraction_encoder": "encoder's share of the parameters (bottleneck layer included)",
    "critical_encoder_fraction": "critical layers before the bottleneck layer (fraction of critical layers)",
    "critical_bottleneck_fraction": "critical layers that are the bottleneck layer (fraction of critical layers)",
    "critical_encoder_param_fraction": "critical parameters before the bottleneck layer (fraction)",
    "critical_bottleneck_param_fraction": "critical parameters in the bottleneck layer (fraction)",
    "stitch_penalty": "stitching penalty at the bottleneck",
    "test_mse": "test MSE per element",
}


# a layer is critical when re-initialising it undoes at least this share of what training gained over the mean
# predictor (normalised damage, ``nets.interventions.normalised_damage``)
CRITICAL_DAMAGE = 0.5


def criticality_rows(table: pd.DataFrame, intervention: str = "reinit") -> pd.DataFrame:
    """layer_criticality.csv -> ``run_id, layer, side, critical, params, damage`` for one intervention (layer = its
    name). ``critical``: 1.0 where the normalised damage is at least ``CRITICAL_DAMAGE``, 0.0 below, NaN where it has
    no scale (the trained model no better than the mean predictor); a table without ``damage`` keeps its ratio-based
    ``critical`` column. ``params``: the layer's parameter count (NaN where the table has none)."""
    rows = table[table["intervention"] == intervention]
    if "damage" in rows:
        damage = pd.to_numeric(rows["damage"], errors="coerce")
        critical = (damage >= CRITICAL_DAMAGE).astype(float).where(damage.notna())
    else:
        damage = pd.Series(np.nan, index=rows.index)
        critical = rows["critical"].astype(str).str.lower().isin(["true", "1", "1.0"]).astype(float)
    return pd.DataFrame(
        {
            "run_id": rows["run_id"],
            "layer": rows["layer_name"] if "layer_name" in rows else rows["layer"],
            "side": rows["side"],
            "critical": critical,
            "params": pd.to_numeric(rows["params"], errors="coerce") if "params" in rows else np.nan,
            "damage": damage,
        }
    )


def stitch_rows(table: pd.DataFrame) -> pd.DataFrame:
    """stitching.csv -> ``run_id_a, run_id_b, penalty`` of the trained stitches at the bottleneck (controls and the
    stitches at other cuts dropped)."""
    rows = table[table["stitch"] == "trained"] if "stitch" in table else table
    rows = rows[rows["cut_side"] == "bottleneck"] if "cut_side" in rows else rows
    a = rows["run_id_a"] if "run_id_a" in rows else rows["a_run_id"]
    b = rows["run_id_b"] if "run_id_b" in rows else rows["run_id"]
    return pd.DataFrame({"run_id_a": a, "run_id_b": b, "penalty": rows["penalty"]})


# quantity of findings.md -> the ``output_bias`` of the frozen decoder in encoder_share.csv (leave-one-out rows)
SHARE_QUANTITIES = {"trained": "encoder_share", "frozen": "encoder_share_frozen_output_bias"}
# encoder_share.csv with ``method``/``design`` columns: the leave-one-out rows above are those of LOO_DESIGN; the
# Shapley share is read from the first of SHAPLEY_DESIGNS the table has (output bias trained where it says)
LOO_DESIGN = "textbook"
SHAPLEY_DESIGNS = ("symmetric", "textbook")


def _column_is(table: pd.DataFrame, column: str, value: str) -> pd.Series:
    """Rows whose ``column`` is ``value``; every row where the table has no such column."""
    if column not in table.columns:
        return pd.Series(True, index=table.index)
    return table[column].astype(str) == value


def encoder_shares(share: pd.DataFrame, metric: str = "test_loss") -> pd.DataFrame:
    """encoder_share.csv -> ``run_id, quantity, value``: the shares of the run's own objective (``metric``).

    ``test_loss`` is each run's own objective (MSE for the AE, -ELBO for the VAE), the loss the share is about; the
    share itself is computed in one place, ``intervention_tables.encoder_share``. A table without ``method`` /
    ``design`` columns holds leave-one-out shares only (one per ``output_bias``). With them, the leave-one-out
    shares are the rows ``method == "leave_one_out"`` of design ``LOO_DESIGN``, and the rows
    ``method == "shapley"`` (of the first design of ``SHAPLEY_DESIGNS`` present) give ``encoder_share_shapley``.
    """
    share = share[share["metric"] == metric]
    loo = share[_column_is(share, "method", "leave_one_out") & _column_is(share, "design", LOO_DESIGN)]
    loo = loo[loo["output_bias"].isin(list(SHARE_QUANTITIES))] if "output_bias" in loo else loo.iloc[:0]
    parts = [
        pd.DataFrame(
            {
                "run_id": loo["run_id"].to_numpy(),
                "quantity": loo["output_bias"].map(SHARE_QUANTITIES).to_numpy(),
                "value": loo["value"].to_numpy(dtype=float),
            }
        )
    ]
    if "method" in share.columns:
        shapley = share[share["method"].astype(str) == "shapley"]
        if "design" in shapley.columns and len(shapley):
            designs = [d for d in SHAPLEY_DESIGNS if d in set(shapley["design"].astype(str))]
            shapley = shapley[shapley["design"].astype(str) == designs[0]] if designs else shapley.iloc[:0]
        if "output_bias" in shapley.columns and (shapley["output_bias"].astype(str) == "trained").any():
            shapley = shapley[shapley["output_bias"].astype(str) == "trained"]
        parts.append(converged_shapley(shapley.drop_duplicates("run_id")))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["run_id", "quantity", "value"])
    return pd.concat(parts, ignore_index=True)


# per-run criticality quantities: of the critical layers (or of their parameters), the share before the bottleneck
# layer and the share that is the bottleneck layer itself (the rest sits in the decoder)
CRITICAL_QUANTITIES = {
    ("layers", "encoder"): "critical_encoder_fraction",
    ("layers", "bottleneck"): "critical_bottleneck_fraction",
    ("params", "encoder"): "critical_encoder_param_fraction",
    ("params", "bottleneck"): "critical_bottleneck_param_fraction",
}


# per-run indicators (1 or 0) beside the Shapley share: the run is left out of it because a frozen variant it uses
# did not converge; none of those variants could be checked (no closed form)
EXCLUDED, UNCHECKED = "shapley_excluded", "shapley_unchecked"


def converged_shapley(shapley: pd.DataFrame) -> pd.DataFrame:
    """The Shapley rows of encoder_share.csv (one per run) -> ``run_id, quantity, value``: ``encoder_share_shapley``,
    NaN for a run whose frozen variants (those its share uses) did not all converge (``converged`` False: a variant's
    training MSE not within ``plans.CONVERGED_TOLERANCE`` of the closed-form optimum of its trainable part), so that
    R2 reads converged runs only; and the indicators ``EXCLUDED`` (1: left out for that) and ``UNCHECKED`` (1: no
    variant could be checked, ``converged`` empty: kept). A table without ``converged`` keeps every run, unchecked."""
    flags = _truth(shapley["converged"]).tolist() if "converged" in shapley else [None] * len(shapley)
    excluded = np.array([f is False for f in flags], dtype=bool)
    unchecked = np.array([f is None for f in flags], dtype=float)
    ids = shapley["run_id"].to_numpy()
    values = {
        "encoder_share_shapley": np.where(excluded, np.nan, shapley["value"].to_numpy(dtype=float)),
        EXCLUDED: excluded.astype(float),
        UNCHECKED: unchecked,
    }
    frames = [pd.DataFrame({"run_id": ids, "quantity": q, "value": v}) for q, v in values.items()]
    return pd.concat(frames, ignore_index=True)


def parameter_fractions(share: pd.DataFrame) -> pd.DataFrame:
    """encoder_share.csv -> ``run_id, quantity, value``: ``param_fraction_encoder``, the encoder's share of the
    architecture's parameters (its layers up to and including the bottleneck layer), reported beside the shares."""
    if "param_fraction_encoder" not in share.columns:
        return pd.DataFrame(columns=["run_id", "quantity", "value"])
    rows = share.dropna(subset=["param_fraction_encoder"]).drop_duplicates("run_id")
    values = rows["param_fraction_encoder"].to_numpy(dtype=float)
    return pd.DataFrame({"run_id": rows["run_id"].to_numpy(), "quantity": "param_fraction_encoder", "value": values})


# per-run indicator beside the criticality quantities: 1 where no layer's damage has a scale (the trained model no
# better than the mean predictor), so that "no critical layer" and "cannot tell" read apart
UNSCALED = "criticality_unscaled"


def critical_layers(criticality: pd.DataFrame) -> pd.DataFrame:
    """Per run, where its critical layers sit: of the critical layers, the fraction in the encoder (the layers
    before the bottleneck layer) and the fraction that is the bottleneck layer, counted per layer and weighted by
    the layers' parameter counts (``CRITICAL_QUANTITIES``); the decoder has the rest. Beside them the indicator
    ``UNSCALED`` (1: the run's damage has no scale, its model being no better than the mean predictor).

    Expects ``criticality_rows`` of one intervention (re-initialisation). NaN where the run has no critical layer,
    where a layer's criticality is unknown (NaN), and, per parameter, where the table has no parameter counts.
    """
    rows = []
    for run_id, run in criticality.groupby("run_id", sort=False):
        flags = pd.to_numeric(run["critical"], errors="coerce")
        critical = run[flags == 1]
        known = flags.notna().all() and len(critical)
        rows.append({"run_id": run_id, "quantity": UNSCALED, "value": float(flags.isna().all())})
        params = pd.to_numeric(critical["params"], errors="coerce") if "params" in critical else None
        for (unit, side), quantity in CRITICAL_QUANTITIES.items():
            value = np.nan
            if known and unit == "layers":
                value = (critical["side"] == side).sum() / len(critical)
            elif known and params is not None and params.notna().all() and params.sum() > 0:
                value = params[critical["side"] == side].sum() / params.sum()
            rows.append({"run_id": run_id, "quantity": quantity, "value": value})
    return pd.DataFrame(rows, columns=["run_id", "quantity", "value"])


def critical_layer_text(criticality: pd.DataFrame, runs: pd.DataFrame, majority: float = DEFAULT_MAJORITY) -> dict:
    """Per (dataset, kind, family): "arch: layer (k/n), ..." for layers critical in at least ``majority`` of seeds."""
    table = criticality.merge(runs[["run_id", *CELL]], on="run_id", how="left")
    out = {}
    for key, group in table.groupby(GROUP, sort=True):
        parts = []
        for arch, per_arch in group.groupby("arch", sort=True):
            n = per_arch["run_id"].nunique()
            flags = pd.to_numeric(per_arch["critical"], errors="coerce")
            counts = per_arch[flags == 1].groupby("layer", sort=False)["run_id"].nunique()
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


# ---------------------------------------------------------------- fixed by construction

NO_ENCODER = "no hidden encoder layer"
NO_DECODER = "no hidden decoder layer"


def hidden_layers(text) -> list[str]:
    """The hidden layers of a runs.csv ``encoder``/``decoder`` cell as their labels: ``48-32-24`` or
    ``c32k4s2-256`` (``config.config_columns``, ``architectures.label``), ``none`` or empty for no hidden layer; a
    list of widths, or its text ``[48, 32]``, reads the same."""
    if isinstance(text, list | tuple):
        return [str(w) for w in text]
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    body = str(text).strip().strip("[]()").strip()
    if body.lower() in ("", "none", "nan"):
        return []
    return [w for w in re.split(r"[-,;\s]+", body) if w]


def fixed_reason(encoder, decoder) -> str:
    """Why an architecture's R1 outcome is fixed by construction, "" when it has hidden layers on both sides."""
    enc, dec = hidden_layers(encoder), hidden_layers(decoder)
    if enc and dec:
        return ""
    if enc:
        return NO_DECODER
    if dec:
        return NO_ENCODER
    return f"{NO_ENCODER} or decoder layer"


def r1_fixed(table: pd.DataFrame) -> pd.Series:
    """Per row, ``fixed_reason`` of its architecture ("" for all rows of a table without encoder/decoder columns)."""
    if not {"encoder", "decoder"} <= set(table.columns):
        return pd.Series("", index=table.index, dtype=object)
    reasons = [fixed_reason(e, d) for e, d in zip(table["encoder"], table["decoder"], strict=True)]
    return pd.Series(reasons, index=table.index, dtype=object)


# ---------------------------------------------------------------- summaries over seeds


def summarize_groups(
    per_run: pd.DataFrame, by: list[str] = GROUP, n_boot: int = N_BOOT, bootstrap=BOOTSTRAP_QUANTITIES
) -> pd.DataFrame:
    """Per group and quantity: mean, std, n (seeds) and 95% CI over per-seed means, run counts, and for the
    quantities of ``bootstrap`` the hierarchical bootstrap 95% CI (``boot95_low``, ``boot95_high``: architectures,
    then seeds within them, resampled; ``n_boot`` replicates, 0 for none).

    ``n_decisive`` and ``k_decisive``: the runs (finite values) of architectures with hidden layers on both sides and,
    of them, those with a value <= 0: what R1 counts. ``fixed_archs``: the other architectures with the reason.
    """
    per_run = per_run.assign(_fixed=r1_fixed(per_run))
    rows = []
    for key, group in per_run.groupby([*by, "quantity"], sort=True):
        per_seed = group.groupby("seed")["value"].mean()
        values = group["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        decisive_rows = group[(group["_fixed"] == "") & np.isfinite(group["value"].to_numpy(dtype=float))]
        decisive = decisive_rows["value"].to_numpy(dtype=float)
        # R1's unit of replication: an architecture x bottleneck cell (its seeds share everything but the seed), a
        # cell counting as <= 0 when most of its models are
        cell_keys = [c for c in CELL_KEYS if c in decisive_rows.columns]
        cells = (decisive_rows["value"] <= 0).groupby([decisive_rows[c] for c in cell_keys]).mean() if cell_keys else []
        row = dict(zip([*by, "quantity"], key, strict=True)) | mean_ci(per_seed.to_numpy())
        row |= {
            "n_runs": finite.size,
            "n_below": int((finite < 0).sum()),
            "n_at": int((finite == 0).sum()),
            "n_above": int((finite > 0).sum()),
            "n_decisive": decisive.size,
            "k_decisive": int((decisive <= 0).sum()),
            "n_cells": len(cells),
            "k_cells": int((np.asarray(cells) > 0.5).sum()),
        }
        fixed = group[group["_fixed"] != ""]
        names = fixed["arch"] if "arch" in fixed.columns else fixed["run_id"]
        row["fixed_archs"] = "; ".join(f"{a} ({r})" for a, r in sorted(set(zip(names, fixed["_fixed"], strict=True))))
        low = high = np.nan
        if n_boot and key[-1] in bootstrap and finite.size:
            cluster = "arch" if "arch" in group.columns else None
            low, high = hierarchical_bootstrap_ci(group, "value", cluster=cluster, unit="seed", n_boot=n_boot)
        row |= {"boot95_low": low, "boot95_high": high}
        rows.append(row)
    columns = [
        *by,
        "quantity",
        *SUMMARY_COLUMNS,
        "n_below",
        "n_at",
        "n_above",
        "n_decisive",
        "k_decisive",
        "n_cells",
        "k_cells",
        "fixed_archs",
    ]
    return pd.DataFrame(rows, columns=columns)


def _get(summary: pd.DataFrame, quantity: str) -> dict | None:
    rows = summary[summary["quantity"] == quantity]
    return rows.iloc[0].to_dict() if len(rows) else None


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- the rules


def rule_compression(row: dict | None, majority: float = DEFAULT_MAJORITY) -> tuple[str, int, int]:
    """R1: (outcome, k decisive runs with offset <= 0, N decisive runs).

    Decisive: runs of architectures with hidden layers on both sides (``n_decisive``; every run of a summary without
    that column). A group whose runs are all of architectures with an empty side is ``fixed by construction``.
    """
    if row is None or not row["n_runs"]:
        return "no data", 0, 0
    if _finite(row.get("n_decisive")):
        k, n = int(row["k_decisive"]), int(row["n_decisive"])
        if n == 0:
            return FIXED, 0, 0
    else:
        k, n = int(row["n_below"] + row["n_at"]), int(row["n_runs"])
    if k >= majority * n:
        return "encoder", k, n
    if n - k >= majority * n:
        return "decoder", k, n
    return "mixed", k, n


# the sub-questions a verdict may combine (``calibration.RULES``): those that give every phantom its answer enter it
VERDICT_RULES = ("compression", "abstraction", "work")


def rule_abstraction(gain: dict | None, in_decoder: dict | None, majority: float = DEFAULT_MAJORITY) -> tuple:
    """RA: (outcome, k models whose decoder holds the factors no more abstractly than the code, N models with a gain).
    From the per-run indicator ``abstraction_decoder`` (1: the gain exceeds ``calibration.ABSTRACTION_MARGIN``):
    ``encoder`` if k >= majority N, ``decoder`` if N - k >= majority N, else ``mixed``; ``no data`` without known
    factors or a hidden decoder layer."""
    if gain is None or in_decoder is None or not in_decoder["n_runs"]:
        return "no data", 0, 0
    n = int(in_decoder["n_runs"])
    k = n - int(in_decoder["n_above"])
    if k >= majority * n:
        return "encoder", k, n
    if n - k >= majority * n:
        return "decoder", k, n
    return "mixed", k, n


def combine(*outcomes: str) -> str:
    """The verdict from the sub-questions' outcomes (those with data): yes if every one says encoder, no if one says
    decoder, partly if one says encoder and none decoder, else undecided."""
    outcomes = {o for o in outcomes if o != "no data"} or {"no data"}
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
    FIXED: "No verdict",
}


def fmt_ci(row: dict | None) -> str:
    """A summary over seeds in words (``formatting.estimate``); ``n/a`` where the quantity was not measured."""
    if row is None:
        return "n/a"
    if not row["n"]:
        return "n/a (no model has a value)"
    return estimate(row)


def fmt_boot(row: dict | None) -> str:
    """``; bootstrap 95% CI [lo, hi]`` beside a summary that has one (not for seeds that all agree)."""
    if row is None or not _finite(row.get("boot95_low")) or is_constant(row):
        return ""
    return f"; hierarchical bootstrap 95% CI [{number(row['boot95_low'])}, {number(row['boot95_high'])}]"


def share_quantity(summary: pd.DataFrame) -> str:
    """The share R2 reads: the Shapley share where the group has one, else the leave-one-out share."""
    return "encoder_share_shapley" if _get(summary, "encoder_share_shapley") is not None else "encoder_share"


# R2 on converged runs only: how many runs its share had (``work_runs``), left out (``work_excluded``: a frozen
# variant did not converge), could not check (``work_unchecked``: no closed form; kept), and why R2 has no data
EXCLUSION_COLUMNS = ["work_runs", "work_excluded", "work_unchecked", "work_reason"]


def share_exclusions(summary: pd.DataFrame, quantity: str, work: str) -> dict:
    """The ``EXCLUSION_COLUMNS`` of a group's verdict: R2's Shapley share counts only runs whose frozen variants
    converged (``converged_shapley``); the counts come from the indicators ``EXCLUDED`` and ``UNCHECKED`` (their
    ``n_above``: runs with indicator 1). ``work_reason`` says why R2 is ``no data``: fewer than 2 seeds left, with
    how many runs were left out; "" otherwise."""
    share, left_out, unchecked = (_get(summary, q) for q in (quantity, EXCLUDED, UNCHECKED))
    shapley = quantity == "encoder_share_shapley"
    runs = int(left_out["n_runs"]) if shapley and left_out else int(share["n_runs"]) if share else 0
    k = int(left_out["n_above"]) if shapley and left_out else 0
    m = int(unchecked["n_above"]) if shapley and unchecked else 0
    reason = ""
    if work == "no data":
        what = "Shapley" if shapley else "leave-one-out"
        reason = f"fewer than 2 seeds with a {what} share" if runs else "no freezing runs"
        if k:
            reason += f" ({k} of {runs} models left out: a frozen variant did not converge)"
    return {"work_runs": runs, "work_excluded": k, "work_unchecked": m, "work_reason": reason}


def exclusion_clauses(excluded: dict) -> list[str]:
    """The verdict sentence's words on R2's converged runs: how many models it left out, how many it could not
    check; why it has no data."""
    runs, k, m = excluded["work_runs"], excluded["work_excluded"], excluded["work_unchecked"]
    if not runs:
        return [f"R2 has no data: {excluded['work_reason']}"] if excluded["work_reason"] else []
    tolerance = f"{CONVERGED_TOLERANCE:.0%}"
    text = (
        f"{k} of {runs} models left out of it because a frozen variant did not come within {tolerance} of its "
        f"closed-form optimum"
        if k
        else f"no model left out for a frozen variant that did not converge (within {tolerance} of its optimum)"
    )
    if m:
        text += f"; {m} of {runs} could not be checked (no closed form) and count"
    clauses = [text]
    if excluded["work_reason"]:  # how many were left out is said just before
        clauses.append(f"R2 has no data: {excluded['work_reason'].split(' (')[0]}")
    return clauses


INTERVAL_KEYS = ["mean", "ci95_low", "ci95_high", "boot95_low", "boot95_high"]


def interval_columns(prefix: str, row: dict | None) -> dict:
    """A summary row's mean with its t-interval and bootstrap interval as ``<prefix>_<key>`` columns (NaN if absent)."""
    return {f"{prefix}_{key}": (row.get(key, np.nan) if row else np.nan) for key in INTERVAL_KEYS}


def verdict(summary: pd.DataFrame, majority: float = DEFAULT_MAJORITY, rules=VERDICT_RULES) -> dict:
    """Apply R1, RA and R2 to one group's summary rows and combine those of ``rules`` (the calibrated ones) into the
    verdict; returns the outcomes, the evidence and the verdict sentence."""
    offsets = _get(summary, "twonn_completion_offset")
    compression, k, n = rule_compression(offsets, majority)
    fixed_archs = str(offsets.get("fixed_archs") or "") if offsets else ""
    fixed_archs = "" if fixed_archs == "nan" else fixed_archs
    p = binomial_test(k, n) if n else np.nan
    k_low, k_high = clopper_pearson(k, n) if n else (np.nan, np.nan)
    n_cells = int(offsets.get("n_cells") or 0) if offsets and _finite(offsets.get("n_cells")) else 0
    k_cells = int(offsets["k_cells"]) if n_cells else 0
    p_cells = binomial_test(k_cells, n_cells) if n_cells else np.nan
    quantity = share_quantity(summary)
    share = _get(summary, quantity)
    work = rule_work(share)
    excluded = share_exclusions(summary, quantity, work)
    gain = _get(summary, "abstraction_gain")
    abstraction, k_abs, n_abs = rule_abstraction(gain, _get(summary, "abstraction_decoder"), majority)
    outcomes = {"compression": compression, "abstraction": abstraction, "work": work}
    result = FIXED if compression == FIXED else combine(*(outcomes[r] for r in rules))

    def outside(rule: str) -> str:
        return "" if rule in rules else "; left out of the verdict: it misses a phantom"

    clauses = []
    if n:
        clauses.append(
            f"compression (TwoNN) completes inside the encoder or at the bottleneck in {k} of {n} models"
            f" (exact binomial test against 1/2: p = {number(p)}){outside('compression')}"
        )
    if n_cells:
        clauses.append(
            f"by architecture x bottleneck cell, the unit that replicates, in {k_cells} of {n_cells} cells (p = "
            f"{number(p_cells)})"
        )
    if compression == FIXED:
        clauses.append(f"R1 is fixed by construction for every architecture of the family: {fixed_archs}")
    elif fixed_archs:
        clauses.append(f"not counted, as fixed by construction: {fixed_archs}")
    if n_abs:
        clauses.append(
            f"a decoder layer holds the known factors more linearly than the code (R² gain above "
            f"{number(ABSTRACTION_MARGIN)}) in {n_abs - k_abs} of {n_abs} models, mean gain {fmt_ci(gain)} (RA: "
            f"{abstraction}{outside('abstraction')})"
        )
    pr_outcome, k_pr, n_pr = rule_compression(_get(summary, "pr_completion_offset"), majority)
    if n_pr:
        clauses.append(f"the participation ratio does in {k_pr} of {n_pr}")
    loo = _get(summary, "encoder_share")
    if quantity == "encoder_share_shapley":
        clauses.append(f"the encoder's Shapley share of the work is {fmt_ci(share)} (R2: {work}{outside('work')})")
        clauses += exclusion_clauses(excluded)
        if loo is not None:
            clauses.append(f"its leave-one-out share {fmt_ci(loo)}")
    elif share is not None:
        clauses.append(f"the encoder does a share of {fmt_ci(share)} of the work (R2: {work}{outside('work')})")
        if excluded["work_reason"]:
            clauses.append(f"R2 has no data: {excluded['work_reason']}")
    control = _get(summary, "encoder_share_frozen_output_bias")
    if control is not None:
        clauses.append(f"with the output bias frozen too, the share would be {fmt_ci(control)}")
    out = {
        "compression": compression,
        "compression_k": k,
        "compression_n": n,
        "compression_p": p,
        "compression_cells_k": k_cells,
        "compression_cells_n": n_cells,
        "compression_cells_p": p_cells,
        "compression_cells_p_holm": np.nan,
        "compression_cp_low": k_low,
        "compression_cp_high": k_high,
        **interval_columns("offset", offsets),
        "pr_compression": pr_outcome,
        "abstraction": abstraction,
        "abstraction_k": k_abs,
        "abstraction_n": n_abs,
        **interval_columns("abstraction_gain", gain),
        "work": work,
        "work_quantity": quantity,
        **excluded,
        **interval_columns("share", share),
        "rules_in_verdict": ", ".join(r for r in rules if outcomes[r] != "no data"),
        "rule_verdict": result,
        "verdict": result,
        "fixed_by_construction": compression == FIXED,
        "fixed_archs": fixed_archs,
        "fragile": False,
        "fragile_settings": "",
        "undecided_reason": (
            ", ".join(f"{CALIBRATED_NAMES[r]} {outcomes[r]}" for r in rules) if result == "undecided" else ""
        ),
        "evidence": "; ".join(clauses) if clauses else "no measurements",
    }
    return out | {"sentence": sentence(out)}


def sentence(row: dict) -> str:
    """The verdict in words: its head (controls failed, fixed by construction, or the verdict), the evidence, and
    the settings that change it if it is fragile."""
    if _controls_failed(row):
        # the rules' own verdict (and whether it is fragile) is in the table, not in a sentence meant to be quoted
        return f"Undecided ({row['undecided_reason']}): {row['evidence']}."
    text = f"{VERDICT_WORDS[row['verdict']]}: {row['evidence']}."
    if row.get("fragile"):
        text += f" Fragile: {row['fragile_settings']}."
    return text


# how ``apply_controls`` begins the reason of a verdict a failed control made undecided, the checks after it
CONTROLS_FAILED = "controls failed: "


def _controls_failed(row: dict) -> bool:
    return str(row.get("undecided_reason") or "").startswith(CONTROLS_FAILED.strip())


VERDICT_COLUMNS = [
    *GROUP,
    "compression",
    "compression_k",
    "compression_n",
    "compression_p",
    "compression_cells_k",
    "compression_cells_n",
    "compression_cells_p",
    "compression_cells_p_holm",
    "compression_cp_low",
    "compression_cp_high",
    "offset_mean",
    "offset_ci95_low",
    "offset_ci95_high",
    "offset_boot95_low",
    "offset_boot95_high",
    "pr_compression",
    "abstraction",
    "abstraction_k",
    "abstraction_n",
    "abstraction_gain_mean",
    "abstraction_gain_ci95_low",
    "abstraction_gain_ci95_high",
    "abstraction_gain_boot95_low",
    "abstraction_gain_boot95_high",
    "work",
    "work_quantity",
    *EXCLUSION_COLUMNS,
    "share_mean",
    "share_ci95_low",
    "share_ci95_high",
    "share_boot95_low",
    "share_boot95_high",
    "rules_in_verdict",
    "rule_verdict",
    "verdict",
    "fixed_by_construction",
    "fixed_archs",
    "fragile",
    "fragile_settings",
    "undecided_reason",
    "evidence",
    "sentence",
]


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN left out of the family and kept NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def verdicts(summary: pd.DataFrame, majority: float = DEFAULT_MAJORITY, rules=VERDICT_RULES) -> pd.DataFrame:
    """Every group's verdict; R1's cell-level p-values Holm-adjusted over the study's R1 tests (one per group that
    has one), said in the evidence."""
    rows = []
    for key, group in summary.groupby(GROUP, sort=True):
        rows.append(dict(zip(GROUP, key, strict=True)) | verdict(group, majority, rules))
    adjusted = holm([row["compression_cells_p"] for row in rows])
    tests = int(np.isfinite(adjusted).sum())
    for row, value in zip(rows, adjusted, strict=True):
        row["compression_cells_p_holm"] = value
        if np.isfinite(value):
            row["evidence"] += f"; Holm-adjusted over the study's {tests} R1 tests: p = {number(value)}"
            row["sentence"] = sentence(row)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _resentence(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["sentence"] = [sentence(row) for row in table.to_dict("records")]
    return table


# ---------------------------------------------------------------- sensitivity


def evaluate(per_run: pd.DataFrame, majority: float = DEFAULT_MAJORITY, rules=VERDICT_RULES) -> pd.DataFrame:
    """The verdicts of a per-run table (no bootstrap: the rules read the t-interval only)."""
    return verdicts(summarize_groups(per_run, n_boot=0), majority, rules)


def _with_offsets(per_run: pd.DataFrame, offsets: pd.DataFrame) -> pd.DataFrame:
    """per_run with its offset quantities replaced by ``offsets`` (``run_id, quantity, value``)."""
    config = per_run.drop_duplicates("run_id").drop(columns=["quantity", "value"])
    fresh = config.merge(offsets, on="run_id", how="inner")
    return pd.concat([per_run[~per_run["quantity"].isin(OFFSET_QUANTITIES)], fresh], ignore_index=True)


SENSITIVITY_COLUMNS = [
    *GROUP,
    "setting",
    "value",
    "compression",
    "work",
    "verdict",
    "baseline_verdict",
    # the verdict a setting's row is compared with: the rules' baseline, or for the control thresholds the verdict the
    # controls at their own thresholds leave
    "reference",
    "same_as_baseline",
    "phantoms",
]


def _with_margin(per_run: pd.DataFrame, margin: float) -> pd.DataFrame:
    """per_run with RA's indicator ``abstraction_decoder`` recomputed from ``abstraction_gain`` at another margin."""
    gains = per_run[per_run["quantity"] == "abstraction_gain"]
    fresh = gains.assign(quantity="abstraction_decoder", value=(gains["value"] > margin).astype(float))
    return pd.concat([per_run[per_run["quantity"] != "abstraction_decoder"], fresh], ignore_index=True)


def _with_loo_share(per_run: pd.DataFrame) -> pd.DataFrame:
    """per_run with R2 reading the textbook design's leave-one-out share instead of the symmetric Shapley share."""
    return per_run[per_run["quantity"] != "encoder_share_shapley"]


SENSITIVITY_MARGINS = (0.01, 0.05)


def sensitivity(
    per_run: pd.DataFrame,
    profiles: pd.DataFrame | None = None,
    majority: float = DEFAULT_MAJORITY,
    tolerances=SENSITIVITY_TOLERANCES,
    majorities=SENSITIVITY_MAJORITIES,
    leave_one_seed_out: bool = True,
    rules=VERDICT_RULES,
    checks: dict | None = None,
    controls: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each group's verdict (by the rules in ``rules``: controls aside) under each setting, one change at a time.

    ``R1 band``: the offsets recomputed from ``profiles`` with a completion tolerance for TwoNN too (the SE band set
    aside; ``value`` the tolerance, 0 for the minimum itself); ``majority``: R1 and RA with that majority;
    ``RA margin``: RA's margin on the R² gain; ``R2 design``: R2 on the textbook leave-one-out share instead of the
    symmetric Shapley share (``value`` "textbook"), where R2 is in ``rules``; ``leave-one-seed-out``: every run of
    that seed dropped (``value`` is the seed). ``same_as_baseline``: the verdict equals the one of ``per_run`` as it
    is at ``majority``. A group that a setting leaves without data reads ``no data``. ``phantoms``: for a setting
    that varies a rule, "" where that variant still gives every phantom its answer, else which it misses
    (``checks``: ``calibration.setting_checks``; a variant without a check counts as passing). ``controls``: every
    control's threshold scaled by each of ``CONTROL_FACTORS`` (``rescaled_controls``; with ``runs``, the runs table
    ``apply_controls`` reads); these rows give the verdict as the controls at that threshold leave it, and
    ``same_as_baseline`` compares it with the verdict the controls at their own thresholds leave.
    """
    base = evaluate(per_run, majority, rules)[[*GROUP, "verdict"]].rename(columns={"verdict": "baseline_verdict"})
    settings = []
    if profiles is not None:
        for tolerance in (0.0, *tolerances):
            table = _with_offsets(per_run, compression_offsets(profiles, tolerance, use_se=False))
            settings.append(("R1 band", tolerance, evaluate(table, majority, rules)))
    for m in majorities:
        settings.append(("majority", m, evaluate(per_run, m, rules)))
    if "abstraction" in rules and (per_run["quantity"] == "abstraction_gain").any():
        for margin in SENSITIVITY_MARGINS:
            settings.append(("RA margin", margin, evaluate(_with_margin(per_run, margin), majority, rules)))
    if "work" in rules and (per_run["quantity"] == "encoder_share_shapley").any():
        settings.append(("R2 design", "textbook", evaluate(_with_loo_share(per_run), majority, rules)))
    if leave_one_seed_out and per_run["seed"].nunique() > 1:
        for seed in sorted(per_run["seed"].unique()):
            settings.append(("leave-one-seed-out", seed, evaluate(per_run[per_run["seed"] != seed], majority, rules)))
    frames = []
    for setting, value, table in settings:
        out = base.merge(table[[*GROUP, "compression", "work", "verdict"]], on=GROUP, how="left")
        out = out.fillna({"compression": "no data", "work": "no data", "verdict": "no data"})
        frames.append(out.assign(setting=setting, value=value, reference=out["baseline_verdict"]))
    if controls is not None and runs is not None and not controls.empty:
        rule_verdicts = evaluate(per_run, majority, rules)
        controlled = apply_controls(rule_verdicts, runs, controls)[[*GROUP, "verdict"]]
        for factor in CONTROL_FACTORS:
            table = apply_controls(rule_verdicts, runs, rescaled_controls(controls, factor))
            out = base.merge(table[[*GROUP, "compression", "work", "verdict"]], on=GROUP, how="left")
            out = out.merge(controlled.rename(columns={"verdict": "reference"}), on=GROUP, how="left")
            frames.append(out.assign(setting="control thresholds", value=factor))
    if not frames:
        return pd.DataFrame(columns=SENSITIVITY_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["same_as_baseline"] = out["verdict"] == out["reference"]
    checks = checks or {}
    out["phantoms"] = [checks.get((s, v), "") for s, v in zip(out["setting"], out["value"], strict=True)]
    return out[SENSITIVITY_COLUMNS]


# the control thresholds' scale factors the sweep tries: every check half as lenient, and twice
CONTROL_FACTORS = (0.5, 2.0)


def rescaled_controls(controls: pd.DataFrame, factor: float) -> pd.DataFrame:
    """controls.csv with every applicable check's threshold scaled by ``factor`` and ``passed`` decided again: an MSE
    tolerance 1 + t becomes 1 + factor t, an excess or an angle limit t becomes factor t; the number compared is the
    ``ratio`` where the check has one, else the ``value``. A stricter threshold only fails more checks; a more lenient
    one passes a failed check whose number is within it, but not a bug found (a train MSE below PCA-z's, ``note``)."""
    status = control_status(controls)
    threshold = pd.to_numeric(controls["threshold"], errors="coerce")
    ratio, value = (pd.to_numeric(controls[c], errors="coerce") for c in ("ratio", "value"))
    compared = ratio.fillna(value)
    # a ratio to a reference with a threshold above 1 is a tolerance (1.02: 2% above), the rest limits (an excess, an
    # angle in degrees)
    tolerance = (ratio.notna() & (threshold > 1)).to_numpy(dtype=bool)
    scaled = np.where(tolerance, 1 + factor * (threshold - 1), factor * threshold)
    within = compared.to_numpy(dtype=float) <= scaled
    was = _truth(controls["passed"]).map(lambda v: v is True).to_numpy(dtype=bool)
    # a bug found (a linear decoder below PCA-z on its own train split) is no threshold's matter
    bug = controls["note"].astype(str).str.contains("impossible", regex=False) if "note" in controls else False
    passed = np.where(factor < 1, was & within, (was | within) & ~np.asarray(bug, dtype=bool))
    applicable = status["applicable"].to_numpy(dtype=bool)
    out = controls.copy()
    out["threshold"] = np.where(applicable, scaled, threshold)
    out["passed"] = np.where(applicable, passed, controls["passed"]).astype(object)
    return out


def rule_settings(per_run: pd.DataFrame, profiles: pd.DataFrame | None, rules=VERDICT_RULES) -> list[tuple]:
    """The (setting, value) pairs of ``sensitivity`` that vary a rule, for ``calibration.setting_checks``."""
    settings = [("R1 band", t) for t in (0.0, *SENSITIVITY_TOLERANCES)] if profiles is not None else []
    if "abstraction" in rules and (per_run["quantity"] == "abstraction_gain").any():
        settings += [("RA margin", m) for m in SENSITIVITY_MARGINS]
    if "work" in rules and (per_run["quantity"] == "encoder_share_shapley").any():
        settings.append(("R2 design", "textbook"))
    return settings


SENSITIVITY_CAPTION = (
    "Each verdict by the rules under other settings, one change at a time: R1's band (the minimum itself, or a "
    "tolerance of 5-20% instead of two standard errors), the majority of R1 and RA, RA's margin, R2's design (where R2 "
    "is in the verdict), every control threshold halved and doubled (compared with the verdict the controls at "
    "their own thresholds leave), and each seed left out. A verdict that differs from the baseline is starred; a row "
    "with a "
    "star is fragile, except where the column is marked †: that variant of the rule misses a phantom "
    "(results/paper/phantoms.csv), so it is no alternative and makes nothing fragile. fixed: R1 is fixed by "
    "construction, no verdict."
)


def sensitivity_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """verdict_sensitivity.csv for a reader: one row per group, its verdict, then one column per setting (the
    verdict there, starred where it differs)."""
    if sweep.empty:
        return pd.DataFrame(columns=[*GROUP, "verdict"])
    missed = sweep["phantoms"].fillna("").astype(str) != "" if "phantoms" in sweep else [False] * len(sweep)
    table = sweep.assign(
        column=[
            _setting_text(s, v) + (" †" if m else "")
            for s, v, m in zip(sweep["setting"], sweep["value"], missed, strict=True)
        ],
        cell=[
            _short(v) if same else f"{_short(v)}*"
            for v, same in zip(sweep["verdict"], sweep["same_as_baseline"], strict=True)
        ],
        baseline_verdict=sweep["baseline_verdict"].map(_short),
    )
    order = list(dict.fromkeys(table["column"]))
    wide = table.pivot_table(index=[*GROUP, "baseline_verdict"], columns="column", values="cell", aggfunc="first")
    wide = wide[order].reset_index().rename(columns={"baseline_verdict": "verdict"})
    wide.columns.name = None
    return wide


def _short(verdict: str) -> str:
    return "fixed" if verdict == FIXED else verdict


def _setting_text(setting: str, value) -> str:
    if setting == "R1 band":
        return "R1 at the minimum itself" if float(value) == 0 else f"R1 band {float(value):.0%} of the minimum"
    if setting == "RA margin":
        return f"RA margin {number(float(value))}"
    if setting == "R2 design":
        return f"R2 on the {value} leave-one-out share"
    if setting == "control thresholds":
        return f"control thresholds x{number(float(value))}"
    if setting == "tolerance":
        return f"completion tolerance {float(value):.0%}"
    if setting == "majority":
        return f"majority {float(value):g}"
    seed = float(value) if _finite(value) else value
    return f"seed {int(seed) if isinstance(seed, float) and seed.is_integer() else seed} left out"


def mark_fragile(verdict_table: pd.DataFrame, sensitivity_table: pd.DataFrame) -> pd.DataFrame:
    """``fragile`` (and ``fragile_settings``, each with the verdict it gives) for verdicts that a setting changes; a
    setting whose variant of a rule misses a phantom (``phantoms`` not empty) changes nothing: it is no alternative."""
    table = verdict_table.copy()
    calibrated = sensitivity_table["phantoms"].fillna("").astype(str) == "" if "phantoms" in sensitivity_table else True
    flips = sensitivity_table[~sensitivity_table["same_as_baseline"].astype(bool) & calibrated]
    texts = {}
    for key, rows in flips.groupby(GROUP, sort=True):
        texts[key] = "; ".join(f"{_setting_text(r.setting, r.value)} gives {r.verdict}" for r in rows.itertuples())
    keys = list(zip(*(table[c] for c in GROUP), strict=True))
    table["fragile"] = [k in texts for k in keys]
    table["fragile_settings"] = [texts.get(k, "") for k in keys]
    return _resentence(table)


# ---------------------------------------------------------------- controls


def _truth(values: pd.Series) -> pd.Series:
    """A CSV column of booleans (True/False, 1/0, yes/no; empty for not known) as True, False or None."""
    words = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False, "0.0": False, "no": False}
    return pd.Series([words.get(str(v).strip().lower()) for v in values], index=values.index, dtype=object)


def control_status(controls: pd.DataFrame) -> pd.DataFrame:
    """controls.csv with ``applicable`` (``applies`` is true, or there is no such column, and ``passed`` is known)
    and ``failed`` (applicable and not passed)."""
    passed = _truth(controls["passed"]) if "passed" in controls else pd.Series(None, index=controls.index)
    applies = _truth(controls["applies"]) if "applies" in controls else pd.Series(True, index=controls.index)
    applicable = applies.map(lambda v: v is not False) & passed.map(lambda v: v is not None)
    failed = applicable & passed.map(lambda v: v is False)
    return controls.assign(applicable=applicable.astype(bool), failed=failed.astype(bool))


def _budget_key(row, columns: list[str]) -> tuple:
    out = []
    for column in columns:
        value = row[column]
        out.append(f"{float(value):.6g}" if _finite(value) else str(value))
    return tuple(out)


def _has_budget(table: pd.DataFrame) -> bool:
    return set(BUDGET) <= set(table.columns)


def failed_checks(controls: pd.DataFrame | None, runs: pd.DataFrame) -> dict:
    """Per group (``GROUP`` key), the sorted names of the failed applicable checks at a training budget of its runs.

    A failure counts for every group whose runs include its budget (``BUDGET``) on the same data set and model kind
    (``CONTROL_SCOPE``, where both tables have the columns); if controls.csv or the runs lack the budget columns,
    for every group.
    """
    if controls is None or controls.empty:
        return {}
    status = control_status(controls)
    failed = status[status["failed"]]
    if failed.empty:
        return {}
    out = {}
    budgeted = _has_budget(failed) and _has_budget(runs)
    scope = [c for c in CONTROL_SCOPE if c in failed.columns and c in runs.columns] + BUDGET
    by_budget = {}
    if budgeted:
        for row in failed.to_dict("records"):
            by_budget.setdefault(_budget_key(row, scope), set()).add(str(row["check"]))
    for key, group in runs.groupby(GROUP, sort=True):
        if budgeted:
            checks = set()
            for row in group.drop_duplicates(scope).to_dict("records"):
                checks |= by_budget.get(_budget_key(row, scope), set())
        else:
            checks = set(failed["check"].astype(str))
        if checks:
            out[key] = sorted(checks)
    return out


def apply_controls(verdict_table: pd.DataFrame, runs: pd.DataFrame, controls: pd.DataFrame | None) -> pd.DataFrame:
    """Every verdict at the training budget of a failed control becomes ``undecided`` (reason: the checks)."""
    table = verdict_table.copy()
    failed = failed_checks(controls, runs)
    for i, key in enumerate(zip(*(table[c] for c in GROUP), strict=True)):
        if key in failed:
            table.loc[table.index[i], "verdict"] = "undecided"
            table.loc[table.index[i], "undecided_reason"] = CONTROLS_FAILED + ", ".join(failed[key])
    return _resentence(table)


CONTROL_LIST_LIMIT = 20


def controls_markdown(controls: pd.DataFrame | None) -> list[str]:
    """The "Controls" section of findings.md: how many applicable checks passed, each failure with its value against
    its threshold, and what the failures do to the verdicts."""
    lines = ["## Controls", ""]
    if controls is None:
        return [*lines, "No control checks were run (the workflow has no `controls_table` rule).", ""]
    status = control_status(controls)
    applicable, failed = status[status["applicable"]], status[status["failed"]]
    n, n_failed = len(applicable), len(failed)
    words = f"{n - n_failed} of {n} applicable control checks passed"
    if len(status) > n:
        words += f" ({len(status) - n} more did not apply)"
    if not n_failed:
        return [*lines, f"{words}.", ""]
    names = ", ".join(sorted(set(failed["check"].astype(str))))
    lines += [
        f"**Controls failed** ({names}): {words}. Every verdict computed on the same data set and model kind at the "
        f"training budget of a failed check ({', '.join(BUDGET)}) is reported as undecided.",
        "",
    ]
    per_check = []
    for check, rows in applicable.groupby("check", sort=True):
        per_check.append(f"{check} {int((~rows['failed']).sum())}/{len(rows)}")
    lines += [f"Passed per check: {', '.join(per_check)}.", ""]
    for row in failed.head(CONTROL_LIST_LIMIT).to_dict("records"):
        where = row.get("run_id") or "/".join(str(row.get(c)) for c in GROUP if c in row)
        budget = ", ".join(f"{c} {number(row[c])}" for c in BUDGET if c in row)
        # controls.csv compares `ratio` with the threshold where it has one (MSE / PCA's, the -ELBO's excess over
        # pPCA's), `value` where it has none (angles): name the number the check compared
        compared = "ratio" if _finite(row.get("ratio")) else "value"
        numbers = f"{compared} {number(row.get(compared))} against threshold {number(row.get('threshold'))}"
        extra = [f"{c} {number(row.get(c))}" for c in ("value", "reference") if c != compared and _finite(row.get(c))]
        note = row.get("note")
        note = f"; {note}" if isinstance(note, str) and note.strip() else ""
        detail = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"- `{row['check']}`, {where} ({budget}): {numbers}{detail}{note}")
    if n_failed > CONTROL_LIST_LIMIT:
        lines.append(f"- and {n_failed - CONTROL_LIST_LIMIT} more failures (results/tables/controls.csv)")
    return [*lines, ""]


# ---------------------------------------------------------------- R3: are encoders interchangeable (swap.csv)

# R3 reads the family-level rows of swap.csv (``intervention_tables.swap_table``) of this normalised penalty,
# (stitched - B) / (init_a stitched - B): 0 when A's encoder serves B's decoder as well as B's own, 1 when it serves
# it no better than an untrained encoder of A's shape stitched the same way ...
SWAP_METRIC = "normalised_penalty_init_a"
# ... and calls the family's encoders interchangeable when the upper end of its 95% CI lies below this: a swapped-in
# encoder that loses less than a fifth of what an untrained one loses (docs/methods.md gives measured values: 0.08 to
# 0.15 across architectures, 0.01 to 0.13 within one, in the default study's digits AE and factors VAE at z = 8)
SWAP_THRESHOLD = 0.2
INTERCHANGEABLE, NOT_INTERCHANGEABLE = "interchangeable", "not interchangeable"
NO_SWAP = "the group has no other architecture to swap encoders with"
NO_SWAP_INTERVAL = (
    "fewer than 2 seeds have a normalised penalty (its denominator, the untrained encoder's penalty, must be positive)"
)
SWAP_RULE_COLUMNS = [
    "swap", "swap_metric", "swap_threshold", "swap_mean", "swap_ci95_low", "swap_ci95_high", "swap_n",
    "swap_control_mean", "swap_control_ci95_low", "swap_control_ci95_high", "swap_control_n", "swap_reason",
    "swap_sentence",
]  # fmt: skip


def swap_summaries(swap: pd.DataFrame, metric: str = SWAP_METRIC) -> dict:
    """swap.csv -> {(dataset, kind, family of A, pair_type): its family-level row} for one metric."""
    rows = swap[(swap["level"].astype(str) == "family") & (swap["metric"].astype(str) == metric)]
    return {(row["dataset"], row["kind"], row["a_family"], row["pair_type"]): row for row in rows.to_dict("records")}


def rule_swap(cross: dict | None, control: dict | None, threshold: float = SWAP_THRESHOLD) -> tuple[str, str]:
    """R3: (outcome, why undecided or no data) from the cross-architecture summary (A's family's encoders into the
    decoders of other architectures, same seed) and its control (into the same architecture from the next seed).

    ``interchangeable``: the cross-architecture CI lies below ``threshold``. ``not interchangeable``: it lies above,
    and the control's lies below (the stitch does swap encoders between two trainings of one architecture: what
    fails is the other shape). ``undecided``: the CI contains the threshold, or it lies above and the control does
    not lie below (the stitch fails within one architecture too, so the other shape is not shown to be the cause).
    ``no data``: no cross-architecture CI (no other architecture in the group, or fewer than 2 seeds with a finite
    normalised penalty).
    """
    if cross is None:
        return "no data", NO_SWAP
    if not _finite(cross.get("ci95_high")):
        return "no data", NO_SWAP_INTERVAL
    if cross["ci95_high"] < threshold:
        return INTERCHANGEABLE, ""
    if cross["ci95_low"] <= threshold:
        return "undecided", f"the interval contains the threshold {threshold:g}"
    if control is not None and _finite(control.get("ci95_high")) and control["ci95_high"] < threshold:
        return NOT_INTERCHANGEABLE, ""
    return "undecided", "the control (same architecture, other seed) is not below the threshold either"


def swap_sentence(outcome: str, cross: dict | None, control: dict | None, threshold: float) -> str:
    """R3 in one sentence for a reader outside the field."""
    if outcome == "no data":
        return f"R3 (swap): no data: {NO_SWAP if cross is None else NO_SWAP_INTERVAL}."
    lost = (
        f"in front of the decoders of other architectures (through a trained linear adapter), this family's encoders "
        f"lose {fmt_ci(cross)} of what an untrained encoder of the same shape loses"
    )
    same = f"in front of the same architecture trained from another seed they lose {fmt_ci(control)}"
    if outcome == INTERCHANGEABLE:
        return (
            f"R3 (swap): interchangeable: {lost}, less than {threshold:g}: what an encoder encodes hardly depends on "
            "the decoder it was trained with, so the encoder is a part that can be taken out and reused."
        )
    if outcome == NOT_INTERCHANGEABLE:
        return (
            f"R3 (swap): not interchangeable: {lost}, more than {threshold:g}, while {same}: what an encoder encodes "
            "is tied to the decoder it was trained with, so 'the encoder' is not a part that can be swapped out."
        )
    if control is not None and _finite(cross.get("ci95_low")) and cross["ci95_low"] > threshold:
        return (
            f"R3 (swap): undecided: {lost}, more than {threshold:g}, but even {same}: the stitch itself falls "
            "short, so this says nothing about the decoder's shape."
        )
    return f"R3 (swap): undecided: {lost}, an interval that contains {threshold:g}: more seeds would tell."


def with_swap_rule(
    verdict_table: pd.DataFrame,
    swap: pd.DataFrame | None,
    threshold: float = SWAP_THRESHOLD,
    metric: str = SWAP_METRIC,
) -> pd.DataFrame:
    """The verdict table with rule R3 beside it (``SWAP_RULE_COLUMNS``; the verdict itself is R1 and R2's, as
    before): per data set, kind and family, are the family's encoders interchangeable across the decoders of the
    group's other architectures (``rule_swap``), from swap.csv's family-level rows of ``metric``. Without swap.csv
    every group reads ``no data``."""
    summaries = swap_summaries(swap, metric) if swap is not None else {}
    table = verdict_table.copy()
    rows = []
    for key in zip(*(table[c] for c in GROUP), strict=True):
        cross, control = summaries.get((*key, "arch")), summaries.get((*key, "seed"))
        outcome, reason = rule_swap(cross, control, threshold)
        row = {"swap": outcome, "swap_metric": metric, "swap_threshold": threshold}
        for prefix, summary in (("swap", cross), ("swap_control", control)):
            row |= {f"{prefix}_{k}": (summary or {}).get(k, np.nan) for k in ("mean", "ci95_low", "ci95_high", "n")}
        rows.append(row | {"swap_reason": reason, "swap_sentence": swap_sentence(outcome, cross, control, threshold)})
    extra = pd.DataFrame(rows, columns=SWAP_RULE_COLUMNS, index=table.index)
    return pd.concat([table.drop(columns=[c for c in SWAP_RULE_COLUMNS if c in table.columns]), extra], axis=1)


def swap_lines(row) -> list[str]:
    """The R3 line of a group in findings.md (none for a verdict table without R3)."""
    text = getattr(row, "swap_sentence", None)
    return [f"- {text}"] if isinstance(text, str) and text else []


SWAP_RULE_TEXT = """\
- R3 swap, reported beside the verdict (not part of it): are the encoders of a family interchangeable across the
  decoders of other architectures, is "the encoder" a separable part at all? Each of the family's encoders is put in
  front of the decoder of every other architecture of its group (same data, kind, bottleneck size and seed) through
  an affine map at the bottleneck, fitted by least squares and trained on the MSE of the decoder's mean output
  (results/tables/swap.csv). Its penalty, test MSE(swapped) - test MSE(B), is divided by that of an untrained encoder
  of the same shape stitched the same way (`{metric}`); per seed averaged over the family's architectures, the
  decoders and the bottlenecks. `interchangeable` if the 95% t-interval over seeds lies below {threshold:g};
  `not interchangeable` if it lies above while the control, the family's encoders put in front of the same
  architecture trained from another seed, lies below {threshold:g}; otherwise `undecided` (the interval contains
  {threshold:g}, or the control fails too: then the stitch itself falls short); `no data` without another
  architecture in the group or with fewer than 2 seeds.
"""


def swap_rule_text(threshold: float = SWAP_THRESHOLD, metric: str = SWAP_METRIC) -> str:
    return SWAP_RULE_TEXT.format(threshold=threshold, metric=metric)


# ---------------------------------------------------------------- findings.md and the front page

RULES_TEXT = """\
Verdict rules (workflow/aedissect/analysis/findings.py), per data set x model kind x architecture family, N = models
(architectures x bottlenecks x seeds) of the group whose architecture has hidden layers on both sides:

- Fixed by construction: an architecture without a hidden decoder layer cannot complete compression after the
  bottleneck, one without a hidden encoder layer cannot complete it before, whatever they learn; their models are
  left out of R1 and named beside it. A group with no other architecture has no verdict (listed separately).
- R1 compression: k = models whose TwoNN dimension comes close to its minimum over the hidden cuts (input and
  output cuts excluded) at or before the bottleneck cut; close: {closeness}.
  `encoder` if k >= {maj:.2f} N, `decoder` if N - k >= {maj:.2f} N, else `mixed`; the exact binomial test of k
  against N/2 is given beside it.
- R2 work: the 95% t-interval over seeds of the encoder's Shapley share of the loss where the freezing runs give
  one (the symmetric design), else of its leave-one-out share (L_enc_frozen - L) / ((L_enc_frozen - L) +
  (L_dec_frozen - L)). The Shapley share counts only models whose frozen variants converged: a model with a
  variant whose training MSE is not within {converged:.0%} of the closed-form optimum of its trainable part is
  left out, and how many were is said beside the share (variants without a closed form cannot be checked and
  count). `encoder` if the interval lies above 0.5, `decoder` if below, `even` if it contains 0.5, `no data` if
  fewer than 2 seeds are left (the reason is given). The hierarchical bootstrap interval (architectures, then
  seeds within them, resampled) and the leave-one-out share of every model are reported beside it.
- RA abstraction (data with known factors): per model the abstraction gain, the largest linear factor R² over the
  decoder's hidden cuts minus the R² at the bottleneck cut; the decoder goes on encoding when the gain exceeds
  {margin} (fixed from the phantoms: decoders that only render their code gain 0-0.001, the un-mixing phantom 0.08).
  k = models with a gain at most {margin}; `encoder` if k >= {maj:.2f} N, `decoder` if N - k >= {maj:.2f} N, else
  `mixed`; `no data` without known factors or a hidden decoder layer.
- Phantoms: each rule is first applied to networks whose answer is known by construction (the linear AE and VAE at
  their optima behind a random gauge, planted networks, their function-preserving twins; results/paper/phantoms.csv);
  only a rule that gives every phantom its answer enters the verdict (the first section of this file says which).
- Verdict, from the rules that enter it and have data: `yes` if every one is `encoder`; `no` if one is `decoder`;
  `partly` if one is `encoder` and none `decoder`; else `undecided`.
- Fragile: a verdict that changes under R1's band (the minimum itself, tolerances {tolerances}), majority
  {majorities}, RA's margin ({margins}), R2's design (textbook leave-one-out, where R2 enters), every control
  threshold halved or doubled, or with any one seed left out (results/paper/verdict_sensitivity.csv); a variant of a
  rule that misses a phantom is no alternative and makes nothing fragile.
- Controls: a verdict whose models share the data set, the model kind and the training budget ({budget}) with a
  failed control check is `undecided (controls failed: ...)`: a control speaks for networks trained on the same
  data with the same objective.
"""


def rules_text(tolerance: float, majority: float, completion: str = "tolerance") -> str:
    if completion == "se":
        closeness = (
            f"within {SE_FACTOR:g} combined standard errors sqrt(se_c² + se_min²) of the maximum-likelihood TwoNN "
            f"estimate (the participation ratio, which has no SE: within {tolerance:.0%})"
        )
    else:
        closeness = f"within {tolerance:.0%} of the minimum"
    return RULES_TEXT.format(
        closeness=closeness,
        maj=majority,
        tolerances=", ".join(f"{t:.0%}" for t in SENSITIVITY_TOLERANCES),
        majorities=", ".join(f"{m:g}" for m in SENSITIVITY_MAJORITIES),
        budget=", ".join(BUDGET),
        converged=CONVERGED_TOLERANCE,
        margin=number(ABSTRACTION_MARGIN),
        margins=", ".join(number(m) for m in SENSITIVITY_MARGINS),
    )


# each rule in one sentence for a reader outside the field (findings.md, "The rules in plain words")
PLAIN_RULES = {
    "R1 (compression)": (
        "An autoencoder squeezes each input through a narrow middle layer (the bottleneck) and rebuilds it from "
        "there; R1 says the first half, the encoder, did the squeezing if in most trained networks the data stops "
        "getting simpler (its measured number of dimensions stops falling) at or before that middle layer."
    ),
    "R2 (work)": (
        "We retrain each network with its first half, its second half, or both left at their random starting "
        "values, credit each half with its average contribution to what training achieves (its Shapley value, "
        "the standard fair split of a joint gain), and R2 says the encoder does the work if its credit is, with "
        "95% confidence, more than half of the total, leaving out networks whose half-frozen retraining had "
        "not finished where that can be checked (against a closed-form optimum; the others count unchecked)."
    ),
    "RA (abstraction)": (
        "Where the data were generated from known factors, we ask whether some layer after the bottleneck holds "
        "those factors in a more directly readable (linear) form than the bottleneck itself; if it does, by a "
        "margin fixed in advance, the decoder went on doing part of the encoding."
    ),
    "Phantoms": (
        "Before a rule is used, it is tried on networks built so that the answer is known (like a measuring "
        "instrument tried on a test object); a rule that gets any of them wrong is left out of the verdict."
    ),
    "Verdict": (
        "The answer is yes only if every rule that passed its phantoms points to the encoder, no if one points to "
        "the second half (the decoder), and partly if some point to the encoder and the others are undecided."
    ),
}


def plain_rules_markdown() -> list[str]:
    """The section of findings.md that says each rule in one sentence a reader outside the field understands."""
    return ["## The rules in plain words", "", *(f"- **{rule}**: {text}" for rule, text in PLAIN_RULES.items()), ""]


def no_critical_text(unscaled: dict | None) -> str:
    """Why a criticality quantity has no value in a group: no layer is critical, or (``UNSCALED`` summary) models
    no better than the mean predictor, whose damage has no scale."""
    k = int(unscaled["n_above"]) if unscaled else 0
    n = int(unscaled["n_runs"]) if unscaled else 0
    if k and k == n:
        return "n/a (no model beats the mean predictor: the damage has no scale)"
    if k:
        return f"n/a (no layer is critical in any model; {k} of {n} models no better than the mean predictor)"
    return "n/a (no layer is critical in any model)"


def _group_lines(group: pd.DataFrame, row, critical: dict, key: tuple) -> list[str]:
    lines = []
    for quantity, label in QUANTITY_LABELS.items():
        q = _get(group, quantity)
        if q is None:
            continue
        extra = ""
        if quantity in OFFSET_QUANTITIES:
            extra = f"; models before / at / after the bottleneck: {q['n_below']} / {q['n_at']} / {q['n_above']}"
        value = fmt_ci(q)
        if quantity in CRITICAL_QUANTITIES.values() and not q["n"]:
            value = no_critical_text(_get(group, UNSCALED))
        lines.append(f"- {label}: {value}{fmt_boot(q)}{extra}")
    if key in critical:
        lines.append(f"- critical layers (re-initialisation): {critical[key]}")
    if row.fixed_by_construction:
        fixed = f"yes, for every architecture ({row.fixed_archs})"
    elif row.fixed_archs:
        fixed = f"for {row.fixed_archs}, left out of R1; the other architectures decide"
    else:
        fixed = "no: every architecture has hidden layers on both sides"
    lines.append(f"- R1 outcome fixed by construction: {fixed}")
    if not row.fixed_by_construction:
        sensitivity = f"fragile, {row.fragile_settings}" if row.fragile else "robust"
        if _controls_failed(row._asdict()):
            sensitivity = f"by the rules alone, controls aside: {row.rule_verdict}, {sensitivity}"
        lines.append(f"- sensitivity: {sensitivity}")
    return lines


def markdown(
    summary: pd.DataFrame,
    verdict_table: pd.DataFrame,
    critical: dict,
    tolerance: float,
    majority: float,
    title: str = "Findings",
    controls: pd.DataFrame | None = None,
    completion: str = "tolerance",
    parameters: pd.DataFrame | None = None,
) -> str:
    """findings.md: the controls first, then the verdict per family with every number (n, 95% CI, bootstrap CI),
    the groups whose R1 outcome is fixed by construction apart, whether "encoder-heavy" and "more encoder
    parameters" can be told apart (``parameters``: share_vs_parameters.csv), then the rules, in plain words and
    exactly."""
    lines = [f"# {title}", "", "Generated from the result tables by `snakemake paper`; do not edit.", ""]
    lines += controls_markdown(controls)
    fixed_rows = []
    for (dataset, kind), block in verdict_table.groupby(["dataset", "kind"], sort=True):
        decided = block[~block["fixed_by_construction"].astype(bool)]
        fixed_rows += [(dataset, kind, row) for row in block[block["fixed_by_construction"].astype(bool)].itertuples()]
        if decided.empty:
            continue
        lines += [f"## {dataset}, {kind.upper()}", ""]
        for row in decided.itertuples():
            group = summary[
                (summary["dataset"] == dataset) & (summary["kind"] == kind) & (summary["family"] == row.family)
            ]
            lines += [f"**{row.family}**: {row.sentence}", ""]
            lines += [*_group_lines(group, row, critical, (dataset, kind, row.family)), *swap_lines(row), ""]
    if fixed_rows:
        lines += ["## Fixed by construction: no verdict", ""]
        for dataset, kind, row in fixed_rows:
            group = summary[
                (summary["dataset"] == dataset) & (summary["kind"] == kind) & (summary["family"] == row.family)
            ]
            lines += [f"**{dataset}, {kind.upper()}, {row.family}**: {row.sentence}", ""]
            lines += [*_group_lines(group, row, critical, (dataset, kind, row.family)), *swap_lines(row), ""]
    lines += parameters_markdown(parameters)
    lines += plain_rules_markdown()
    lines += ["## How the verdicts are chosen", "", rules_text(tolerance, majority, completion)]
    if "swap" in verdict_table.columns:
        lines.append(swap_rule_text(verdict_table["swap_threshold"].iloc[0], verdict_table["swap_metric"].iloc[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------- the share against the parameter counts

# the share findings.md reads from share_vs_parameters.csv: R2's (the symmetric design's Shapley share), else the
# textbook leave-one-out share with the frozen decoder's output bias trained
PARAMETER_SHARES = (("shapley", "symmetric", None), ("leave_one_out", "textbook", "trained"))


def _interval(row, prefix: str = "boot95") -> tuple[float, float]:
    """The bootstrap interval of a share_vs_parameters row where it has one, else its t-interval."""
    low, high = row.get(f"{prefix}_low", np.nan), row.get(f"{prefix}_high", np.nan)
    if _finite(low) and _finite(high):
        return float(low), float(high)
    return float(row.get("ci95_low", np.nan)), float(row.get("ci95_high", np.nan))


def _with_interval(row, prefix: str = "boot95") -> str:
    low, high = _interval(row, prefix)
    if not (_finite(low) and _finite(high)):
        return f"{number(row['value'])} (no interval)"
    return f"{number(row['value'])} [95% CI {number(low)}, {number(high)}]"


def _interval_kind(row) -> str:
    """Which interval ``_with_interval`` gave a line's row, in words."""
    if _finite(row.get("boot95_low")) and _finite(row.get("boot95_high")):
        return "interval: bootstrap over architectures"
    return "interval: Student-t with the models as observations, too few architectures to resample"


def parameters_conclusion(slope: dict, difference: dict | None, predicted: dict | None) -> str:
    """Whether "encoder-heavy" and "has more encoder parameters" can be told apart, from the line of the share on
    the encoder's parameter fraction (``slope``) and the matched pair (``difference``: observed, ``predicted``: what
    the line predicts from the pair's fractions alone):

    - fewer than ``MIN_CLUSTERS`` architectures: too few to tell;
    - the observed difference's interval and the predicted difference's interval (bootstrap where it has one) do not
      overlap: told apart (the pair differs by more or less than where its parameters sit predicts: the network's
      shape matters beyond its parameter count);
    - else, where the slope's interval excludes 0 or the difference's does: not told apart (the share follows the
      parameters, and the pair differs by what their fractions predict);
    - else neither moves the share measurably: nothing to tell apart.
    """
    if not _finite(slope.get("value")):
        return "too few architectures to fit a line"
    if int(slope.get("n_archs") or 0) < MIN_CLUSTERS:
        return (
            f"with {int(slope.get('n_archs') or 0)} architectures the line is the difference between them: too few "
            "to tell the family from where its parameters sit"
        )
    low, high = _interval(slope)
    sloped = _finite(low) and (low > 0 or high < 0)
    if difference is None or predicted is None:
        what = "follows" if sloped else "does not measurably follow"
        return (
            f"the share {what} the encoder's share of the parameters; the study has no pair of architectures of "
            f"matched parameter counts ({' and '.join(MATCHED_PAIR)}) to tell the two apart"
        )
    d_low, d_high = float(difference.get("ci95_low", np.nan)), float(difference.get("ci95_high", np.nan))
    if not (_finite(d_low) and _finite(d_high)):
        return "too few seeds of the matched pair to tell the two apart"
    p_low, p_high = _interval(predicted)
    if not (_finite(p_low) and _finite(p_high)):
        p_low = p_high = float(predicted["value"])
    if d_high < p_low or p_high < d_low:  # the prediction's own uncertainty counts too, not only its point
        return (
            "they can be told apart: at matched parameter counts the two differ by an amount their parameter "
            "fractions do not predict, so the shape of the network matters beyond where its parameters sit"
        )
    if sloped or d_low > 0 or d_high < 0:
        return (
            "they cannot be told apart: the share follows where the parameters sit, and at matched parameter counts "
            "the two differ by what their parameter fractions predict"
        )
    return "neither the parameter fraction nor the family moves the share measurably: there is nothing to tell apart"


def _count(value) -> str:
    return number(int(round(float(value)))) if _finite(value) else number(np.nan)


def parameters_markdown(table: pd.DataFrame | None, metric: str = "test_loss") -> list[str]:
    """The section of findings.md on whether "encoder-heavy" and "has more encoder parameters" can be told apart:
    per data set and kind, from share_vs_parameters.csv (``intervention_tables.share_vs_parameters``), the line of
    the share (R2's, ``PARAMETER_SHARES``) on the encoder's parameter fraction, the share it predicts at a fraction
    of 0.5, the matched pair and ``parameters_conclusion``."""
    if table is None or table.empty:
        return []
    lines = ["## Encoder-heavy, or more encoder parameters?", ""]
    rows = table[table["metric"].astype(str) == metric]
    for (dataset, kind), block in rows.groupby(["dataset", "kind"], sort=True):
        chosen = None
        for method, design, bias in PARAMETER_SHARES:
            pick = block[(block["method"].astype(str) == method) & (block["design"].astype(str) == design)]
            if bias is not None and "output_bias" in pick:
                pick = pick[pick["output_bias"].astype(str) == bias]
            if len(pick):
                chosen, label = pick, "Shapley" if method == "shapley" else "leave-one-out"
                break
        if chosen is None:
            continue
        by = {(r["estimate"], str(r["arch"])): r for r in chosen.to_dict("records")}
        slope, half = by.get(("slope", "all")), by.get(("share_at_half", "all"))
        if slope is None:
            continue
        names = [str(a) for e, a in by if e == "matched_share"]
        pair = " - ".join(names)
        difference, predicted = by.get(("matched_difference", pair)), by.get(("matched_difference_predicted", pair))
        text = (
            f"**{dataset}, {kind.upper()}**: across {int(slope['n_archs'])} architectures ({int(slope['n_runs'])} "
            f"models; the encoder's share of the parameters from {number(slope['fraction_min'])} to "
            f"{number(slope['fraction_max'])}) the encoder's {label} share changes by "
            f"{_with_interval(slope)} per unit of that fraction ({_interval_kind(slope)})"
        )
        if half is not None and _finite(half["value"]):
            text += f"; at a fraction of 0.5 the line gives {_with_interval(half)} ({half['note']})"
        if int(slope.get("n_excluded") or 0):
            text += f"; {int(slope['n_excluded'])} models left out, their frozen variants unconverged"
        if difference is not None and predicted is not None:
            shares = [by[("matched_share", a)] for a in names]
            each = ", ".join(
                f"{a} {_with_interval(r, 'ci95')} ({_count(r['params_total'])} parameters, a fraction of "
                f"{number(r['param_fraction_encoder'])} in the encoder)"
                for a, r in zip(names, shares, strict=True)
            )
            text += (
                f". At matched parameter counts the shares are {each}: a difference of "
                f"{_with_interval(difference, 'ci95')} (Welch interval over seeds), where the line predicts "
                f"{_with_interval(predicted)} from their parameter fractions alone"
            )
        text += f". In short, {parameters_conclusion(slope, difference, predicted)}."
        lines += [text, ""]
    return lines if len(lines) > 2 else []


def display_verdict(row: dict) -> str:
    """A verdict as the front page shows it: ``undecided*`` where a control failed, ``yes (fragile)``, ``fixed``
    (by construction);
    which controls failed is said once below the table (``front_page_rst``), in reStructuredText: the table must fit
    the first screen."""
    if _controls_failed(row):
        return r"undecided\*"
    text = "fixed" if row["verdict"] == FIXED else str(row["verdict"])  # three words would take a second line
    return f"{text} (fragile)" if row.get("fragile") is True or str(row.get("fragile")) == "True" else text


def failed_scopes(verdict_table: pd.DataFrame) -> dict[str, list[str]]:
    """Which control checks failed, per scope a control speaks for (``CONTROL_SCOPE``: data set and model kind,
    written ``digits VAE``), in the table's order: the checks of every verdict of the scope that a failed control
    made undecided, each once."""
    out: dict[str, list[str]] = {}
    for row in verdict_table.to_dict("records"):
        if _controls_failed(row):
            scope = f"{row['dataset']} {str(row['kind']).upper()}"
            checks = str(row["undecided_reason"]).removeprefix(CONTROLS_FAILED.strip()).strip(" :").split(", ")
            out.setdefault(scope, [])
            out[scope] += [c for c in checks if c and c not in out[scope]]
    return out


def failed_scopes_text(failed: dict[str, list[str]]) -> str:
    """The front page's footnote to ``undecided*``: each failed scope once, with its checks, as few words as the
    first screen allows: scopes whose checks are the same share them (``controls failed in digits VAE (a, b),
    factors AE and factors VAE (c)``)."""
    by_checks: dict[tuple, list[str]] = {}
    for scope, checks in failed.items():
        by_checks.setdefault(tuple(checks), []).append(scope)
    parts = [f"{' and '.join(scopes)} ({', '.join(checks)})" for checks, scopes in by_checks.items()]
    return "controls failed in " + ", ".join(parts)


# R3 on the front page: a column beside the verdicts, one mark per family in the columns' order, the question and
# the marks said once below the table
SWAP_DISPLAY = {INTERCHANGEABLE: "✓", NOT_INTERCHANGEABLE: "✗", "undecided": "?", "no data": "–"}
SWAP_LEGEND = "**R3**, per family: do its encoders serve other architectures' decoders (✓, ✗, ? undecided, – no other)?"


def display_swap(row: dict) -> str:
    """R3's outcome as the front page shows it beside the verdicts (``SWAP_DISPLAY``): ``–`` where the verdict
    table has none."""
    outcome = row.get("swap")
    if not isinstance(outcome, str) or not outcome:
        return SWAP_DISPLAY["no data"]
    return SWAP_DISPLAY.get(outcome, "?")


def front_page_rst(verdict_table: pd.DataFrame, intro: str, answer: list[str] = ()) -> str:
    """The report's front page: the intro's title, the answer's first sentence (``analysis.answer.rst``: the sentences
    that open findings.md and the README), the verdicts as one small table (data set and kind by family), the answer's
    other sentences (each sub-question's number), then the rest of the static intro; short enough to fit the first
    screen: Snakemake's report centres its front page vertically, so a page taller than the window loses its top,
    title included. The numbers behind the verdicts are in findings.md, a report item of its own.

    Snakemake renders the page with Jinja2 first: the generated part sits in a raw block so that no name in it can
    be read as a template tag.
    """
    families = [f for f in FAMILIES if f in set(verdict_table["family"])]
    r3 = "swap" in verdict_table.columns
    rows = [["data set", "model", *families, *(["R3"] if r3 else [])]]
    for (dataset, kind), block in verdict_table.groupby(["dataset", "kind"], sort=True):
        by_family = {r["family"]: r for r in block.to_dict("records")}
        cells = [display_verdict(by_family[f]) if f in by_family else "n/a" for f in families]
        if r3:  # one mark per family, in the columns' order: the pane has no room for a column per family
            cells.append("".join(display_swap(by_family.get(f, {})) for f in families))
        rows.append([dataset, kind.upper(), *cells])
    table = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        table += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    legend = (
        "By the rules that pass their phantoms: **yes**: all point to the encoder, **partly**: some do, **no**: one "
        "points to the decoder, **undecided**: none decides; **fixed**: no architecture of the family has hidden "
        "layers on both sides; **fragile**: another setting changes it."
    )
    legend += f" {SWAP_LEGEND} Numbers: **Findings**." if r3 else " Numbers: **Findings**."
    failed = failed_scopes(verdict_table)
    if failed:
        legend = f"\\* {failed_scopes_text(failed)}. " + legend
    heading, _, rest = intro.strip().partition("\n\n")  # the title and its underline, then the description
    first, details = ([answer[0], ""], [" ".join(answer[1:]), ""]) if answer else ([], [])
    out = [heading, "", "{% raw %}", *first, *table, "", *details, legend, "{% endraw %}"]
    return "\n".join([*out, *(["", rest.rstrip()] if rest else [])]) + "\n"


# ---------------------------------------------------------------- the factor locus

# the loci of encoding_locus.csv (truncation_tables.LOCUS_CRITERIA) that read the linear factor probe, in the order
# findings.md gives them, with their words; only data with known factors have them
FACTOR_LOCI = {
    "factor_r2_95": "95% of the maximal linear factor R² first reached (`factor_r2_95`)",
    "factor_r2_max": "maximal linear factor R² (`factor_r2_max`)",
}
FACTOR_LOCUS_COLUMNS = [
    *GROUP,
    "locus",
    *SUMMARY_COLUMNS,
    "n_encoder",
    "n_input",
    "n_bottleneck",
    "n_decoder",
    "share_encoder",
    "share_encoder_cp_low",
    "share_encoder_cp_high",
    "one_sided_archs",
]
FACTOR_LOCUS_HEADING = "## Where the factors are encoded: the factor locus"


def factor_locus(locus: pd.DataFrame | None, runs: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """factor_locus.csv: per data set x kind x family and factor locus (``FACTOR_LOCI``) the offset of the locus from
    the bottleneck over seeds and where the models' loci lie.

    ``locus`` is encoding_locus.csv (per run and locus: ``cut``, ``offset`` = cut - bottleneck cut); ``runs`` is
    runs.csv. The offset is summarised as every findings quantity (``summarize_groups``: each seed averaged over the
    family's architectures and bottlenecks, then mean, std, n and the 95% t-interval over seeds, and the
    hierarchical bootstrap interval). ``n_encoder``, ``n_bottleneck``, ``n_decoder``: the models whose locus lies
    before the bottleneck cut (offset < 0), at it, after it; ``n_input`` of the first: at the input cut itself (the
    data already hold the factors that well). ``share_encoder`` = n_encoder / n_runs with its Clopper-Pearson 95%
    interval. ``one_sided_archs``: the family's architectures without a hidden layer on one side (their encoder is
    only the input cut, or their decoder only the output cut). No rows without the table or factors.
    """
    if locus is None or locus.empty:
        return pd.DataFrame(columns=FACTOR_LOCUS_COLUMNS)
    rows = locus[locus["locus"].isin(list(FACTOR_LOCI))]
    body = pd.DataFrame(
        {"run_id": rows["run_id"], "quantity": rows["locus"], "value": rows["offset"], "cut": rows["cut"]}
    )
    per_run = quantities(runs, [body])
    if per_run.empty:
        return pd.DataFrame(columns=FACTOR_LOCUS_COLUMNS)
    summary = summarize_groups(per_run, n_boot=n_boot, bootstrap=list(FACTOR_LOCI)).rename(
        columns={
            "quantity": "locus",
            "n_below": "n_encoder",
            "n_at": "n_bottleneck",
            "n_above": "n_decoder",
            "fixed_archs": "one_sided_archs",
        }
    )
    at_input = per_run[per_run["cut"] == 0].groupby([*GROUP, "quantity"]).size()
    keys = zip(*(summary[c] for c in [*GROUP, "locus"]), strict=True)
    summary["n_input"] = [int(at_input.get(key, 0)) for key in keys]
    shares = [
        (k / n, *clopper_pearson(k, n)) if n else (np.nan, np.nan, np.nan)
        for k, n in zip(summary["n_encoder"], summary["n_runs"], strict=True)
    ]
    summary[["share_encoder", "share_encoder_cp_low", "share_encoder_cp_high"]] = pd.DataFrame(
        shares, index=summary.index, dtype=float
    )
    order = {name: i for i, name in enumerate(FACTOR_LOCI)}
    summary = summary.sort_values([*GROUP, "locus"], key=lambda c: c.map(order) if c.name == "locus" else c)
    return summary[FACTOR_LOCUS_COLUMNS].reset_index(drop=True)


def _locus_line(row: dict) -> str:
    """One factor locus of one family in words: the offset over seeds, then where the models' loci lie."""
    where = f"in the encoder {row['n_encoder']} of {row['n_runs']} models"
    if row["n_runs"]:
        low, high = number(row["share_encoder_cp_low"]), number(row["share_encoder_cp_high"])
        where += f" (share {number(row['share_encoder'])}, Clopper-Pearson 95% CI [{low}, {high}])"
    if row["n_input"]:
        where += f", {row['n_input']} of them at the input"
    where += f", at the bottleneck {row['n_bottleneck']}, in the decoder {row['n_decoder']}"
    return f"{FACTOR_LOCI[row['locus']]}: offset {fmt_ci(row)}{fmt_boot(row)}; {where}"


def factor_locus_markdown(table: pd.DataFrame | None, runs: pd.DataFrame, locus: pd.DataFrame | None) -> list[str]:
    """The factor-locus section of findings.md: per data set with known factors, kind and family, where the linear
    factor probe finds the factors (``factor_locus``); the study's other data sets are named with the reason."""
    lines = [FACTOR_LOCUS_HEADING, ""]
    if locus is None:
        return [*lines, "No layer was probed (the workflow has no `truncation_tables` rule).", ""]
    lines += [
        "Per model, the factor locus (`results/tables/encoding_locus.csv`) is the first cut, from the input, whose "
        "linear factor R² (ridge, mean over the known factors) reaches 95% of its maximum over the cuts "
        "(`factor_r2_95`), and the cut of that maximum (`factor_r2_max`), in layers from the bottleneck cut: negative "
        "inside the encoder (the input cut included), 0 at the bottleneck, positive inside the decoder (the output cut "
        "included). Mean over seeds, each seed first averaged over the family's architectures and bottlenecks, with "
        "its 95% t-interval; the models in the encoder with the Clopper-Pearson 95% interval of their share. A "
        "one-sided architecture has no hidden layer on one side: its encoder is the input cut alone, or its decoder "
        "the output cut alone. Numbers: `results/paper/factor_locus.csv`.",
        "",
    ]
    table = table if table is not None else pd.DataFrame(columns=FACTOR_LOCUS_COLUMNS)
    for (dataset, kind), block in table.groupby(["dataset", "kind"], sort=True):
        lines += [f"### {dataset}, {kind.upper()}", ""]
        for family, rows in block.groupby("family", sort=False):
            records = rows.to_dict("records")
            one_sided = str(records[0]["one_sided_archs"] or "")
            one_sided = f" (one-sided: {one_sided})" if one_sided not in ("", "nan") else ""
            lines += [f"- **{family}**{one_sided}, {_locus_line(r)}" for r in records]
        lines.append("")
    probed = set(runs.loc[runs["run_id"].isin(locus["run_id"]), "dataset"])
    others = []
    for dataset in sorted(set(runs["dataset"]) - set(table["dataset"])):
        reason = "no known factors" if dataset in probed else "not in truncation.select"
        others.append(f"{dataset} ({reason})")
    if others:
        lines += [f"No factor locus on {', '.join(others)}.", ""]
    return lines


def with_section(text: str, lines: list[str], before: str = "## How the verdicts are chosen") -> str:
    """findings.md with a section inserted before the heading ``before`` (appended where it has none)."""
    section = "\n".join(lines).rstrip("\n") + "\n\n"
    at = text.find(f"\n{before}\n")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section
    return text[: at + 1] + section + text[at + 1 :]
