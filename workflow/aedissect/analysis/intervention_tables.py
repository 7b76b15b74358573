"""The intervention tables: freeze sweep and encoder share, layer criticality, stitching; each with its summary; and
the swap matrix (``swap_table``), the stitching table's cross-architecture part at the bottleneck.

Read from the files the torch jobs of ``aedissect.nets.interventions`` wrote; pandas only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aedissect import io
from aedissect.analysis.aggregate import runs_table
from aedissect.analysis.aggregate import with_config as join
from aedissect.analysis.stats import summarize
from aedissect.config import config_columns
from aedissect.inference import shapley_shares
from aedissect.plans import OUTPUT_BIAS_SUFFIX, bottleneck_cut, n_layers, output_bias, parse_spec

# the test metrics of every intervention: the run's own objective and the deterministic reconstruction MSE
METRICS = ["test_loss", "test_mse"]

# what a freeze variant's train_metrics.json records besides its test metrics (``nets.interventions.variant_metrics``):
# final training MSE, the closed-form optimum where the trainable part is linear, the sides' parameter counts
VARIANT_COLUMNS = [
    "train_mse", "optimum_mse", "optimum_test_mse", "optimum_reason", "converged", "converged_tolerance",
    "params_encoder", "params_decoder",
]  # fmt: skip


def freeze_table(runs: list[dict], freeze_dirs: list[str], normal_metric_paths: list[str]) -> pd.DataFrame:
    """One row per run and freeze spec with its test metrics; the normal run is spec ``none`` (k = 0).

    ``side`` is the spec's base (encoder, decoder, both, prefix, suffix, none), ``code_map`` whether a trainable
    affine map on the frozen encoder's code trains (``+code``), ``logvar_head`` whether the VAE's frozen
    log-variance head trains (``+logvar``); ``optimum_mse`` / ``converged`` compare the training MSE with the
    closed-form optimum where the trainable part is linear given the frozen features (AE only; else NaN and
    ``optimum_reason`` says why)."""
    by_id = {run["run_id"]: run for run in runs}
    rows = []
    for path in normal_metric_paths:
        metrics = io.read_json(path)
        if metrics["run_id"] in by_id:
            rows.append(
                metrics
                | {"freeze": "none", "frozen_layers": [], "output_bias": output_bias(False)}
                | {"optimum_reason": "normal run: nothing is frozen"}
            )
    for folder in freeze_dirs:
        rows += [io.read_json(p) for p in sorted(Path(folder).glob("s*/*/train_metrics.json"))]
    records = []
    for m in rows:
        run = by_id[m["run_id"]]
        spec = m["freeze"]
        parts = parse_spec(spec)
        frozen = list(m["frozen_layers"])
        base = config_columns(run) | {
            "freeze": spec,
            "side": parts["side"],
            "k": 0 if spec == "none" else (float("nan") if parts["k"] is None else parts["k"]),
            "n_frozen": len(frozen),
            "output_bias": m["output_bias"],
            "code_map": parts["code"],
            "logvar_head": parts["logvar"],
            "n_layers": n_layers(run),
            "bottleneck_cut": bottleneck_cut(run),
            "encoder_frozen": spec == "encoder",
        }
        variant = {c: m.get(c, float("nan")) for c in VARIANT_COLUMNS}
        variant["converged"] = np.nan if variant["converged"] is None else variant["converged"]
        records.append(base | {metric: m[metric] for metric in METRICS} | variant | {"same_as": m.get("same_as", "")})
    return pd.DataFrame(records).sort_values(["run_id", "side", "k", "freeze"], ignore_index=True)


# the frozen-decoder spec of each textbook (leave-one-out) encoder share: output layer's bias left to train (the
# share the verdict uses), or frozen with the rest (the textbook freeze, trained with freeze.frozen_output_bias as its
# control)
DECODER_SPECS = {"trained": "decoder" + OUTPUT_BIAS_SUFFIX, "frozen": "decoder"}
SHARE_COLUMNS = [
    "metric", "method", "design", "output_bias", "spec_enc", "spec_dec", "spec_both",
    "loss_full", "loss_enc_frozen", "loss_dec_frozen", "loss_both_frozen", "phi_enc", "phi_dec", "value", "reason",
    "params_encoder", "params_decoder", "param_fraction_encoder", "param_fraction_decoder",
]  # fmt: skip


def symmetric_encoder_spec(specs) -> str | None:
    """Of a run's specs, the symmetric design's frozen encoder: the one spec of side ``encoder`` with a mirror
    (``+code`` and/or ``+logvar``, ``plans.symmetric_specs``), else plain ``encoder`` where a both-frozen spec shows
    the design ran with both mirrors switched off."""
    mirrors = [s for s in specs if parse_spec(s)["side"] == "encoder" and s != "encoder"]
    if mirrors:
        return max(mirrors, key=len)
    return "encoder" if any(parse_spec(s)["side"] == "both" for s in specs) else None


def encoder_share(freeze: pd.DataFrame) -> pd.DataFrame:
    """The encoder's share of the work per run and metric, one row per ``method`` and ``design``:

    - ``method = leave_one_out``: share = (L_enc - L_full) / ((L_enc - L_full) + (L_dec - L_full)), what freezing
      each part alone costs. ``design = textbook``: L_enc with the encoder frozen (``encoder``), L_dec with the
      decoder frozen, its output bias trained (``output_bias = trained``: ``decoder+bias``, the share R2 uses) or
      frozen too (``frozen``: ``decoder``, the control), as ``DECODER_SPECS``. ``design = symmetric``: L_enc with
      the frozen encoder's mirror pieces trained (``encoder+code``; ``+logvar`` for the VAE), L_dec ``decoder+bias``.
    - ``method = shapley``, ``design = symmetric``: the two-player Shapley share (``inference.shapley_shares``)
      phi_enc / (phi_enc + phi_dec) from those L_enc, L_dec and L_both with both frozen, only the affine pieces
      trained (``both+code+bias``). It averages each part's marginal value over both orders (the other part
      trained, and frozen); leave-one-out takes only the first, so a part that the other can compensate for (a
      trainable decoder inverting a frozen random encoder) looks as if it did no work.

    ``value`` is NaN (``reason`` says why) when a loss is missing or the denominator is not positive. Symmetric
    rows leave ``output_bias`` empty (that design always trains the output bias). ``param_fraction_encoder`` is the
    architecture's share of parameters in the encoder (its layers up to and including the bottleneck layer).
    """
    long = freeze.melt(id_vars=["run_id", "freeze"], value_vars=METRICS, var_name="metric", value_name="value")
    wide = long.pivot_table(index=["run_id", "metric"], columns="freeze", values="value", aggfunc="first")
    config = freeze.drop_duplicates("run_id").set_index("run_id")
    config = config[[c for c in config.columns if c in _CONFIG_COLUMNS]]
    specs = freeze.groupby("run_id")["freeze"].agg(list).to_dict()
    params = {}
    if {"params_encoder", "params_decoder"} <= set(freeze.columns):
        params = freeze.dropna(subset=["params_encoder"]).drop_duplicates("run_id").set_index("run_id")
        params = params[["params_encoder", "params_decoder"]].to_dict("index")
    nan = float("nan")
    rows = []
    for (rid, metric), row in wide.iterrows():
        losses_of = row.to_dict()
        count = params.get(rid, {"params_encoder": nan, "params_decoder": nan})
        total = count["params_encoder"] + count["params_decoder"]
        common = {"run_id": rid, **config.loc[rid].to_dict(), "metric": metric} | count
        common |= {"param_fraction_encoder": count["params_encoder"] / total}
        common |= {"param_fraction_decoder": count["params_decoder"] / total}
        designs = [("textbook", bias, "encoder", spec, None) for bias, spec in DECODER_SPECS.items()]
        mirror = symmetric_encoder_spec(specs[rid])
        both = next((s for s in specs[rid] if parse_spec(s)["side"] == "both"), None)
        if mirror is not None:
            designs.append(("symmetric", nan, mirror, DECODER_SPECS["trained"], both))
        for design, bias, spec_enc, spec_dec, spec_both in designs:
            full, enc, dec, both_loss = (losses_of.get(s, nan) for s in ("none", spec_enc, spec_dec, spec_both))
            if pd.isna(dec) or (design == "symmetric" and pd.isna(enc)):
                continue
            shares = shapley_shares(full, enc, dec, both_loss)
            losses = {"loss_full": full, "loss_enc_frozen": enc, "loss_dec_frozen": dec}
            named = {"design": design, "output_bias": bias, "spec_enc": spec_enc, "spec_dec": spec_dec}
            rows.append(
                common
                | {"method": "leave_one_out"} | named | {"spec_both": ""} | losses
                | {"loss_both_frozen": nan, "phi_enc": nan, "phi_dec": nan}
                | {"value": shares["loo_share"], "reason": shares["loo_reason"]}
            )  # fmt: skip
            if spec_both is not None:
                rows.append(
                    common
                    | {"method": "shapley"} | named | {"spec_both": spec_both} | losses
                    | {"loss_both_frozen": both_loss, "phi_enc": shares["phi_enc"], "phi_dec": shares["phi_dec"]}
                    | {"value": shares["share"], "reason": shares["share_reason"]}
                )  # fmt: skip
    columns = ["run_id", *[c for c in _CONFIG_COLUMNS if c in config.columns], *SHARE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


_CONFIG_COLUMNS = [
    "dataset", "kind", "arch", "family", "encoder", "decoder", "bottleneck", "activation", "seed",
    "epochs", "batch_size", "lr", "beta", "likelihood", "config_hash",
]  # fmt: skip
GROUP = ["dataset", "kind", "bottleneck", "activation"]


def share_summaries(share: pd.DataFrame) -> pd.DataFrame:
    """Encoder share with a 95% CI over seeds, per architecture and per family (``level`` says which)."""
    by = ["metric", "method", "design", "output_bias"]
    by_arch = summarize(share, [*GROUP, "family", "arch", *by]).assign(level="arch")
    by_family = summarize(share, [*GROUP, "family", *by]).assign(level="family", arch="all")
    return pd.concat([by_arch, by_family], ignore_index=True)


def with_config(runs: list[dict], paths: list[str]) -> pd.DataFrame:
    return join(runs, [pd.read_csv(p) for p in paths])


def freeze_summary(freeze: pd.DataFrame) -> pd.DataFrame:
    """Test metrics per cell and freeze spec: mean, std and 95% CI over seeds."""
    by = [*GROUP, "family", "arch", "freeze", "side", "k", "n_frozen", "output_bias", "bottleneck_cut"]
    by = [c for c in by if c in freeze.columns]
    long = freeze.melt(id_vars=by, value_vars=METRICS, var_name="metric", value_name="value")
    return summarize(long, [*by, "metric"])


def criticality_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ratio (test MSE over the trained model's) with CI over seeds, and how many seeds call it critical."""
    by = [*GROUP, "family", "arch", "layer", "layer_name", "side", "intervention"]
    summary = summarize(table, by, value="ratio")
    critical = table.groupby(by, dropna=False)["critical"].mean().rename("critical_share").reset_index()
    return summary.merge(critical, on=by, how="left")


# the penalties of stitching.csv (``nets.interventions.normalised_penalties``): raw, and normalised by the init_a
# control and by the mean predictor
STITCH_PENALTIES = ["penalty", "normalised_penalty_init_a", "normalised_penalty_mean"]
# A's architecture beside B's config columns
A_COLUMNS = {"run_id": "run_id_a", "family": "a_family", "encoder": "a_encoder", "decoder": "a_decoder"}


def stitching_table(runs: list[dict], paths: list[str]) -> pd.DataFrame:
    """The stitching jobs' rows with B's config columns (``run_id`` is B's) and A's architecture (``a_arch``,
    ``a_family``, ``a_encoder``, ``a_decoder``)."""
    table = with_config(runs, paths)
    a = runs_table(runs)[list(A_COLUMNS)].rename(columns=A_COLUMNS)
    table = table.drop(columns=[c for c in A_COLUMNS.values() if c != "run_id_a" and c in table.columns])
    table = table.merge(a, on="run_id_a", how="left", validate="many_to_one")
    columns = list(table.columns)
    for name in reversed(["a_family", "a_encoder", "a_decoder"]):
        columns.remove(name)
        columns.insert(columns.index("a_arch") + 1, name)
    return table[columns]


def stitching_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Every penalty (``metric``: raw and both normalisations) per pair of architectures, pair type, stitch and cut:
    mean, std, n and 95% CI over seeds."""
    cut = [c for c in ("cut_name", "cut_side", "cut_offset") if c in table.columns]
    by = [*GROUP, "a_arch", "arch", "pair_type", "stitch", *cut]
    metrics = [m for m in STITCH_PENALTIES if m in table.columns]
    long = table.melt(id_vars=by, value_vars=metrics, var_name="metric", value_name="value")
    return summarize(long, [*by, "metric"])


# the swap matrix: the trained stitches at the bottleneck between architectures (``arch``, same seed) and, as its
# control, within one architecture (``seed``: the next seed of the same architecture)
SWAP_PAIR_TYPES = ["arch", "seed"]
SWAP_CONFIG = ["dataset", "kind", "activation", "epochs", "batch_size", "lr", "beta", "likelihood", "stitch_objective"]
SWAP_PAIR = ["a_arch", "a_family", "a_encoder", "a_decoder", "arch", "family", "encoder", "decoder", "bottleneck"]
SWAP_COLUMNS = [
    "level", *SWAP_CONFIG, "pair_type", *SWAP_PAIR, "metric", "mean", "std", "n", "ci95_low", "ci95_high",
]  # fmt: skip


def swap_table(stitching: pd.DataFrame) -> pd.DataFrame:
    """swap.csv: A's encoder into B's decoder through a trained affine stitch at the bottleneck, every penalty
    (``metric``: ``penalty``, ``normalised_penalty_init_a``, ``normalised_penalty_mean``) with a 95% t-interval
    over seeds, in tidy long format:

    - ``level = pair``: per pair of architectures A (``a_*``) and B (``arch``, ``family``, ``encoder``,
      ``decoder``) and bottleneck; ``pair_type = arch`` for A and B of two architectures (the same seed),
      ``seed`` for one architecture (B the next seed: the matrix's diagonal, the control);
    - ``level = family``: per family of A (``a_family``) and pair type, each seed's mean over A's architectures of
      the family, every B and every bottleneck, then the interval over seeds (the columns of the pair are
      ``all``): what rule R3 of ``findings`` reads.

    The stitch's objective (``stitch_objective``) is the MSE of B's mean output, for the VAE too.
    """
    rows = stitching[
        (stitching["stitch"] == "trained")
        & stitching["pair_type"].isin(SWAP_PAIR_TYPES)
        & (stitching["cut_side"] == "bottleneck")
    ]
    metrics = [m for m in STITCH_PENALTIES if m in rows.columns]
    long = rows.melt(id_vars=[*SWAP_CONFIG, "pair_type", *SWAP_PAIR, "seed"], value_vars=metrics, var_name="metric")
    pair = summarize(long, [*SWAP_CONFIG, "pair_type", *SWAP_PAIR, "metric"]).assign(level="pair")
    by_family = [*SWAP_CONFIG, "pair_type", "a_family", "metric"]
    per_seed = long.groupby([*by_family, "seed"], dropna=False, sort=True)["value"].mean().reset_index()
    family = summarize(per_seed, by_family).assign(level="family")
    family = family.assign(**{c: "all" for c in SWAP_PAIR if c != "a_family"})
    return pd.concat([pair, family], ignore_index=True)[SWAP_COLUMNS]
