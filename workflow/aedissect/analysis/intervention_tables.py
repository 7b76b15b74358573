"""The intervention tables: freeze sweep and encoder share, layer criticality, stitching; each with its summary.

Read from the files the torch jobs of ``aedissect.nets.interventions`` wrote; pandas only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aedissect import io
from aedissect.analysis.aggregate import with_config as join
from aedissect.analysis.stats import summarize
from aedissect.config import config_columns
from aedissect.plans import OUTPUT_BIAS_SUFFIX, bottleneck_cut, n_layers, output_bias

# the test metrics of every intervention: the run's own objective and the deterministic reconstruction MSE
METRICS = ["test_loss", "test_mse"]


def freeze_table(runs: list[dict], freeze_dirs: list[str], normal_metric_paths: list[str]) -> pd.DataFrame:
    """One row per run and freeze spec with its test metrics; the normal run is spec ``none`` (k = 0)."""
    by_id = {run["run_id"]: run for run in runs}
    rows = []
    for path in normal_metric_paths:
        metrics = io.read_json(path)
        if metrics["run_id"] in by_id:
            rows.append(metrics | {"freeze": "none", "frozen_layers": [], "output_bias": output_bias(False)})
    for folder in freeze_dirs:
        rows += [io.read_json(p) for p in sorted(Path(folder).glob("s*/*/train_metrics.json"))]
    records = []
    for m in rows:
        run = by_id[m["run_id"]]
        spec = m["freeze"]
        name = spec.removesuffix(OUTPUT_BIAS_SUFFIX)
        side, k = (name.rsplit("-", 1)[0], int(name.rsplit("-", 1)[1])) if "-" in name else (name, float("nan"))
        frozen = list(m["frozen_layers"])
        base = config_columns(run) | {
            "freeze": spec,
            "side": side,
            "k": 0 if spec == "none" else k,
            "n_frozen": len(frozen),
            "output_bias": m["output_bias"],
            "n_layers": n_layers(run),
            "bottleneck_cut": bottleneck_cut(run),
            "encoder_frozen": spec == "encoder",
        }
        records.append(base | {metric: m[metric] for metric in METRICS} | {"same_as": m.get("same_as", "")})
    return pd.DataFrame(records).sort_values(["run_id", "side", "k"], ignore_index=True)


# the frozen-decoder spec of each encoder share: output layer's bias left to train (the share the verdict uses),
# or frozen with the rest (the textbook freeze, trained with freeze.frozen_output_bias as its control)
DECODER_SPECS = {"trained": "decoder" + OUTPUT_BIAS_SUFFIX, "frozen": "decoder"}


def encoder_share(freeze: pd.DataFrame) -> pd.DataFrame:
    """share_enc = (L_enc - L_full) / ((L_enc - L_full) + (L_dec - L_full)) per run, metric and ``output_bias``.

    NaN when the denominator is not positive (freezing both halves costs nothing in total: no share to divide).

    L_enc: the loss with the encoder frozen at init, L_dec with the decoder frozen (its output bias trained or
    frozen: ``DECODER_SPECS``), L_full the normal run.
    """
    long = freeze.melt(id_vars=["run_id", "freeze"], value_vars=METRICS, var_name="metric", value_name="value")
    wide = long[long["freeze"].isin(["none", "encoder", *DECODER_SPECS.values()])].pivot_table(
        index=["run_id", "metric"], columns="freeze", values="value", aggfunc="first"
    )
    config = freeze.drop_duplicates("run_id").set_index("run_id")
    config = config[[c for c in config.columns if c in _CONFIG_COLUMNS]]
    rows = []
    for (rid, metric), row in wide.iterrows():
        for bias, spec in DECODER_SPECS.items():
            if pd.isna(row.get(spec)):
                continue
            gain_enc, gain_dec = row["encoder"] - row["none"], row[spec] - row["none"]
            total = gain_enc + gain_dec
            # undefined unless freezing costs something in all: a total <= 0 has no share to divide
            share = gain_enc / total if np.isfinite(total) and total > 0 else float("nan")
            rows.append(
                {"run_id": rid, **config.loc[rid].to_dict(), "metric": metric, "output_bias": bias}
                | {"loss_full": row["none"], "loss_enc_frozen": row["encoder"], "loss_dec_frozen": row[spec]}
                | {"value": share}
            )
    return pd.DataFrame(rows)


_CONFIG_COLUMNS = [
    "dataset", "kind", "arch", "family", "encoder", "decoder", "bottleneck", "activation", "seed",
    "epochs", "batch_size", "lr", "beta", "likelihood", "config_hash",
]  # fmt: skip
GROUP = ["dataset", "kind", "bottleneck", "activation"]


def share_summaries(share: pd.DataFrame) -> pd.DataFrame:
    """Encoder share with a 95% CI over seeds, per architecture and per family (``level`` says which)."""
    by_arch = summarize(share, [*GROUP, "family", "arch", "metric", "output_bias"]).assign(level="arch")
    by_family = summarize(share, [*GROUP, "family", "metric", "output_bias"]).assign(level="family", arch="all")
    return pd.concat([by_arch, by_family], ignore_index=True)


def with_config(runs: list[dict], paths: list[str]) -> pd.DataFrame:
    return join(runs, [pd.read_csv(p) for p in paths])


def freeze_summary(freeze: pd.DataFrame) -> pd.DataFrame:
    """Test metrics per cell and freeze spec: mean, std and 95% CI over seeds."""
    by = [*GROUP, "family", "arch", "freeze", "side", "k", "n_frozen", "output_bias", "bottleneck_cut"]
    long = freeze.melt(id_vars=by, value_vars=METRICS, var_name="metric", value_name="value")
    return summarize(long, [*by, "metric"])


def criticality_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ratio (test MSE over the trained model's) with CI over seeds, and how many seeds call it critical."""
    by = [*GROUP, "family", "arch", "layer", "layer_name", "side", "intervention"]
    summary = summarize(table, by, value="ratio")
    critical = table.groupby(by, dropna=False)["critical"].mean().rename("critical_share").reset_index()
    return summary.merge(critical, on=by, how="left")


def stitching_summary(table: pd.DataFrame) -> pd.DataFrame:
    by = [*GROUP, "a_arch", "arch", "pair_type", "stitch"]
    return summarize(table, by, value="penalty")
