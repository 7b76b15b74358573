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
from aedissect.analysis.stats import mean_ci, summarize
from aedissect.config import Run, config_columns
from aedissect.inference import shapley_shares
from aedissect.plans import OUTPUT_BIAS_SUFFIX, bottleneck_cut, n_layers, output_bias, parse_spec

# the test metrics of every intervention: the run's own objective and the deterministic reconstruction MSE
METRICS = ["test_loss", "test_mse"]

# what a freeze variant's train_metrics.json records besides its test metrics (``nets.interventions.variant_metrics``):
# final training MSE, the closed-form optimum where the trainable part is linear, the sides' parameter counts
VARIANT_COLUMNS = [
    "solved", "train_mse", "optimum_mse", "optimum_test_mse", "optimum_reason", "converged", "converged_tolerance",
    "params_encoder", "params_decoder",
]  # fmt: skip


def freeze_table(runs: list[Run], freeze_dirs: list[str], normal_metric_paths: list[str]) -> pd.DataFrame:
    """One row per run and freeze spec with its test metrics; the normal run is spec ``none`` (k = 0).

    ``side`` is the spec's base (encoder, decoder, both, prefix, suffix, none), ``code_map`` whether a trainable
    affine map on the frozen encoder's code trains (``+code``), ``logvar_head`` whether the VAE's frozen
    log-variance head trains (``+logvar``); ``optimum_mse`` / ``converged`` compare the training MSE with the
    closed-form optimum where the trainable part is linear given the frozen features (AE only; else NaN and
    ``optimum_reason`` says why); ``solved`` is ``closed_form`` where that optimum is the variant's result (it was not
    trained, ``nets.interventions.train_freeze_cell``), else ``trained``."""
    by_id = {run["run_id"]: run for run in runs}
    rows = []
    for path in normal_metric_paths:
        metrics = io.read_json(path)
        if metrics["run_id"] in by_id:
            rows.append(
                metrics
                | {"freeze": "none", "frozen_layers": [], "output_bias": output_bias(False)}
                | {"optimum_reason": "normal run: nothing is frozen", "solved": "trained"}
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
    "converged", "unconverged_specs", "unchecked_specs",
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
    return with_convergence(pd.DataFrame(rows, columns=columns), freeze)


def _truth(value) -> bool | None:
    """A ``converged`` cell (bool, 1/0, "True"/"False"; NaN or empty for not known) as True, False or None."""
    words = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    return words.get(str(value).strip().lower())


def with_convergence(share: pd.DataFrame, freeze: pd.DataFrame) -> pd.DataFrame:
    """The share rows with whether the frozen variants each share uses (``spec_enc``, ``spec_dec`` and, where it
    has one, ``spec_both``) converged (``freeze.csv``'s ``converged``: within ``CONVERGED_TOLERANCE`` of the
    closed-form optimum of their trainable part):

    - ``converged``: False where any of them did not, True where every one that could be checked did, NaN where
      none could be checked (no closed form: the VAE, a trainable part that is not linear);
    - ``unconverged_specs`` / ``unchecked_specs``: those specs, "; "-separated.
    """
    known = {}
    if "converged" in freeze.columns:
        columns = (freeze["run_id"], freeze["freeze"], freeze["converged"])
        known = {(r, f): _truth(c) for r, f, c in zip(*columns, strict=True)}
    converged, unconverged, unchecked = [], [], []
    for row in share.to_dict("records"):
        specs = [row[c] for c in ("spec_enc", "spec_dec", "spec_both") if isinstance(row.get(c), str) and row[c]]
        flags = {spec: known.get((row["run_id"], spec)) for spec in specs}
        bad = [spec for spec, flag in flags.items() if flag is False]
        unconverged.append("; ".join(bad))
        unchecked.append("; ".join(spec for spec, flag in flags.items() if flag is None))
        converged.append(False if bad else True if any(f is True for f in flags.values()) else np.nan)
    return share.assign(
        converged=pd.Series(converged, index=share.index, dtype=object),
        unconverged_specs=unconverged,
        unchecked_specs=unchecked,
    )


_CONFIG_COLUMNS = [
    "dataset", "kind", "arch", "family", "encoder", "decoder", "bottleneck", "activation", "seed",
    "epochs", "batch_size", "lr", "beta", "likelihood", "config_hash",
]  # fmt: skip
GROUP = ["dataset", "kind", "bottleneck", "activation"]


def share_summaries(share: pd.DataFrame) -> pd.DataFrame:
    """Encoder share with a 95% CI over seeds, per architecture and per family (``level`` says which), beside each
    side's mean share of the parameters (``param_fraction_encoder``, ``param_fraction_decoder``: the architecture's
    own, or the mean over the family's runs) and how many runs had a frozen variant that did not converge
    (``n_unconverged``)."""
    by = ["metric", "method", "design", "output_bias"]
    parts = []
    for level, keys in (("arch", [*GROUP, "family", "arch", *by]), ("family", [*GROUP, "family", *by])):
        summary = summarize(share, keys).assign(level=level)
        extra = share.assign(_unconverged=share["converged"].map(_truth).eq(False) if "converged" in share else False)
        fractions = [c for c in ("param_fraction_encoder", "param_fraction_decoder") if c in share.columns]
        grouped = extra.groupby(keys, sort=True, dropna=False)
        extra = grouped[fractions].mean().join(grouped["_unconverged"].sum().rename("n_unconverged")).reset_index()
        parts.append(summary.merge(extra, on=keys, how="left"))
    parts[1] = parts[1].assign(arch="all")
    return pd.concat(parts, ignore_index=True)


def with_config(runs: list[Run], paths: list[str]) -> pd.DataFrame:
    return join(runs, [pd.read_csv(p) for p in paths])


def freeze_summary(freeze: pd.DataFrame) -> pd.DataFrame:
    """Test metrics per cell and freeze spec: mean, std and 95% CI over seeds."""
    by = [*GROUP, "family", "arch", "freeze", "side", "k", "n_frozen", "output_bias", "bottleneck_cut"]
    by = [c for c in by if c in freeze.columns]
    long = freeze.melt(id_vars=by, value_vars=METRICS, var_name="metric", value_name="value")
    return summarize(long, [*by, "metric"])


def criticality_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ratio (test MSE over the trained model's) with CI over seeds, and how many seeds call it critical;
    where the table has the normalised ``damage``, its mean with CI over seeds (``damage_*``) too."""
    by = [*GROUP, "family", "arch", "layer", "layer_name", "side", "intervention"]
    summary = summarize(table, by, value="ratio")
    critical = table.groupby(by, dropna=False)["critical"].mean().rename("critical_share").reset_index()
    summary = summary.merge(critical, on=by, how="left")
    if "damage" in table.columns:
        damage = summarize(table, by, value="damage")
        damage = damage.rename(columns={c: f"damage_{c}" for c in ("mean", "std", "n", "ci95_low", "ci95_high")})
        summary = summary.merge(damage, on=by, how="left")
    return summary


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


# ---------------------------------------------------------------- the share against the parameter counts

# the two architectures of config.yaml whose parameter counts match, their sides mirrored: the encoder-heavy and
# the decoder-heavy network at matched parameter counts
MATCHED_PAIR = ("enc-heavy-matched", "dec-heavy-matched")
# a regression and a matched comparison per data set, kind and training budget (the config columns the share table
# has), and per share: metric, method, design and the frozen decoder's output bias
PARAMETER_CONFIG = ["dataset", "kind", "epochs", "batch_size", "lr", "beta", "likelihood"]
PARAMETER_SHARE = ["metric", "method", "design", "output_bias"]
# the value the regression predicts the share at: as many encoder as decoder parameters
BALANCED_FRACTION = 0.5
# the fewest architectures a bootstrap over architectures is drawn from
MIN_CLUSTERS = 3
PARAMETER_COLUMNS = [
    "estimate", "arch", "value", "ci95_low", "ci95_high", "boot95_low", "boot95_high",
    "n_runs", "n_archs", "n_seeds", "n_excluded", "fraction_min", "fraction_max", "param_fraction_encoder",
    "params_total", "note",
]  # fmt: skip


def ols_fit(x, y, at: float = BALANCED_FRACTION, level: float = 0.95) -> dict:
    """Least squares y = intercept + slope x with Student-t intervals (n - 2 degrees of freedom), every row an
    observation: ``slope``, ``intercept``, ``at`` (the fitted value at ``x = at``), each ``(value, low, high)``, and
    ``r_squared``. NaN where there are fewer than 3 rows or fewer than 2 distinct x; a perfect fit has intervals of
    width 0."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    nan3 = (np.nan, np.nan, np.nan)
    n = x.size
    if n < 3 or np.unique(x).size < 2:
        return {"slope": nan3, "intercept": nan3, "at": nan3, "r_squared": np.nan}
    from scipy import stats

    mx, my = x.mean(), y.mean()
    sxx, syy = ((x - mx) ** 2).sum(), ((y - my) ** 2).sum()
    slope = ((x - mx) * (y - my)).sum() / sxx
    intercept = my - slope * mx
    resid = y - intercept - slope * x
    s = np.sqrt((resid**2).sum() / (n - 2))
    t = stats.t.ppf(0.5 + level / 2, n - 2)
    fitted = intercept + slope * at
    errors = {
        "slope": s / np.sqrt(sxx),
        "intercept": s * np.sqrt(1 / n + mx**2 / sxx),
        "at": s * np.sqrt(1 / n + (at - mx) ** 2 / sxx),
    }
    values = {"slope": slope, "intercept": intercept, "at": fitted}
    out = {k: (float(v), float(v - t * errors[k]), float(v + t * errors[k])) for k, v in values.items()}
    return out | {"r_squared": float(1 - (resid**2).sum() / syy) if syy > 0 else np.nan}


def cluster_bootstrap_fit(
    x, y, clusters, at: float = BALANCED_FRACTION, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Percentile intervals of the least-squares slope, intercept and fitted value at ``at`` over a bootstrap of
    the clusters (architectures): each replicate draws as many clusters as there are, with replacement, every row of
    a drawn cluster kept, and refits. Replicates whose rows have a single distinct x are skipped; (NaN, NaN) for
    each where there are fewer than ``MIN_CLUSTERS`` clusters (with two, every replicate that fits is the same two
    clusters' line: a zero-width interval that says nothing) or no replicate fits. Deterministic for a ``seed``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    codes = pd.factorize(np.asarray(clusters), sort=True)[0]
    n_clusters = codes.max() + 1 if codes.size else 0
    nan2 = (np.nan, np.nan)
    if n_clusters < MIN_CLUSTERS or not n_boot:
        return {"slope": nan2, "intercept": nan2, "at": nan2}
    # per cluster: n, sum x, sum y, sum x^2, sum x y; a replicate's sums are its draw counts times these
    sums = np.zeros((n_clusters, 5))
    np.add.at(sums, codes, np.column_stack([np.ones_like(x), x, y, x * x, x * y]))
    rng = np.random.default_rng(seed)
    draws = rng.integers(n_clusters, size=(n_boot, n_clusters))
    counts = np.zeros((n_boot, n_clusters))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    n, sx, sy, sxx, sxy = (counts @ sums).T
    denominator = n * sxx - sx**2
    fits = denominator > 1e-12 * n * sxx
    slope = (n[fits] * sxy[fits] - sx[fits] * sy[fits]) / denominator[fits]
    intercept = (sy[fits] - slope * sx[fits]) / n[fits]
    if not fits.any():
        return {"slope": nan2, "intercept": nan2, "at": nan2}
    q = [(1 - level) / 2, (1 + level) / 2]
    return {
        name: tuple(float(v) for v in np.quantile(values, q))
        for name, values in (("slope", slope), ("intercept", intercept), ("at", intercept + slope * at))
    }


def _welch(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) with the Welch t-interval; NaN interval with fewer than 2 values on a side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return np.nan, np.nan, np.nan
    difference = a.mean() - b.mean()
    if a.size < 2 or b.size < 2:
        return float(difference), np.nan, np.nan
    from scipy import stats

    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return float(difference), float(difference), float(difference)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return float(difference), float(difference - half), float(difference + half)


def share_vs_parameters(
    share: pd.DataFrame, n_boot: int = 2000, matched: tuple[str, str] = MATCHED_PAIR, seed: int = 0
) -> pd.DataFrame:
    """Does the encoder's share follow its share of the parameters? Per data set, kind and budget
    (``PARAMETER_CONFIG``) and per share (``PARAMETER_SHARE``), one row per ``estimate``:

    - ``slope``, ``intercept``: the least-squares line share = intercept + slope x ``param_fraction_encoder`` across
      the architectures (every bottleneck), each model (seed) an observation; ``ci95_*`` its Student-t interval
      with the models as observations, ``boot95_*`` a bootstrap over the architectures (``cluster_bootstrap_fit``):
      the fraction is the architecture's, so the models of one architecture are not independent evidence on the
      slope and the bootstrap interval is the one to read; ``share_at_half``: the line at a fraction of 0.5 (as many
      encoder as decoder parameters; ``note`` says whether that lies inside the fractions measured);
      ``r_squared``.
    - at matched parameter counts (``matched``: two architectures of equal size, sides mirrored):
      ``matched_share`` per architecture (``arch``; mean over seeds, each seed's models over the bottlenecks
      averaged first, t-interval), ``matched_difference`` (first minus second, Welch interval over the seeds) and
      ``matched_difference_predicted``: what the line predicts from their parameter fractions alone,
      slope x (f_first - f_second), with the slope's intervals scaled.

    Shares that are NaN, and shares whose frozen variants did not converge (``converged`` False: ``n_excluded``),
    are left out. ``fraction_min``/``fraction_max``: the range of encoder parameter fractions the line is fitted on.
    """
    config = [c for c in PARAMETER_CONFIG if c in share.columns]
    keys = [*config, *[c for c in PARAMETER_SHARE if c in share.columns]]
    if share.empty or "param_fraction_encoder" not in share.columns:
        return pd.DataFrame(columns=[*keys, *PARAMETER_COLUMNS])
    unconverged = share["converged"].map(_truth).eq(False) if "converged" in share else False
    usable = share.assign(_excluded=unconverged, value=pd.to_numeric(share["value"], errors="coerce"))
    usable["params_total"] = usable["params_encoder"] + usable["params_decoder"]
    rows = []
    for key, group in usable.groupby(keys, sort=True, dropna=False):
        head = dict(zip(keys, key, strict=True))
        kept = group[~group["_excluded"] & np.isfinite(group["value"]) & group["param_fraction_encoder"].notna()]
        x, y = kept["param_fraction_encoder"].to_numpy(float), kept["value"].to_numpy(float)
        common = {"n_runs": len(kept), "n_archs": kept["arch"].nunique(), "n_seeds": kept["seed"].nunique()}
        common |= {"n_excluded": int(group["_excluded"].sum())}
        common |= {"fraction_min": x.min() if x.size else np.nan, "fraction_max": x.max() if x.size else np.nan}
        fit = ols_fit(x, y)
        boot = cluster_bootstrap_fit(x, y, kept["arch"].to_numpy(), n_boot=n_boot, seed=seed)
        inside = x.size and common["fraction_min"] <= BALANCED_FRACTION <= common["fraction_max"]
        notes = {"at": "inside the fractions measured" if inside else "outside the fractions measured: extrapolated"}
        for estimate, name in (("slope", "slope"), ("intercept", "intercept"), ("share_at_half", "at")):
            value, low, high = fit[name]
            rows.append(
                head | common | {"estimate": estimate, "arch": "all", "value": value, "ci95_low": low}
                | {"ci95_high": high, "boot95_low": boot[name][0], "boot95_high": boot[name][1]}
                | {"note": notes.get(name, "")}
            )  # fmt: skip
        rows.append(head | common | {"estimate": "r_squared", "arch": "all", "value": fit["r_squared"], "note": ""})
        rows += _matched_rows(kept, head, common, matched, fit["slope"], boot["slope"])
    out = pd.DataFrame(rows)
    return out.reindex(columns=[*keys, *PARAMETER_COLUMNS])


def _scaled(interval, factor: float) -> tuple[float, float]:
    """An interval (low, high) times ``factor``, still low to high."""
    low, high = (v * factor for v in interval)
    return (low, high) if factor >= 0 else (high, low)


def _matched_rows(kept: pd.DataFrame, head: dict, common: dict, matched, slope, boot_slope) -> list[dict]:
    """The ``matched_*`` rows of ``share_vs_parameters`` for one group (none where either architecture is absent)."""
    per_seed, fractions, totals = {}, {}, {}
    for arch in matched:
        rows = kept[kept["arch"] == arch]
        if rows.empty:
            return []
        per_seed[arch] = rows.groupby("seed")["value"].mean().to_numpy(float)
        fractions[arch] = float(rows["param_fraction_encoder"].mean())
        totals[arch] = float(rows["params_total"].mean())
    out = []
    for arch in matched:
        summary = mean_ci(per_seed[arch])
        out.append(
            head | common | {"estimate": "matched_share", "arch": arch, "value": summary["mean"]}
            | {"ci95_low": summary["ci95_low"], "ci95_high": summary["ci95_high"], "n_seeds": summary["n"]}
            | {"param_fraction_encoder": fractions[arch], "params_total": totals[arch], "note": ""}
        )  # fmt: skip
    first, second = matched
    name = f"{first} - {second}"
    gap = fractions[first] - fractions[second]
    value, low, high = _welch(per_seed[first], per_seed[second])
    note = f"parameters {totals[first]:.0f} vs {totals[second]:.0f}"
    n_seeds = min(len(per_seed[first]), len(per_seed[second]))
    out.append(
        head | common | {"estimate": "matched_difference", "arch": name, "value": value, "ci95_low": low}
        | {"ci95_high": high, "n_seeds": n_seeds, "param_fraction_encoder": gap, "note": note}
    )  # fmt: skip
    ci, boot = _scaled(slope[1:], gap), _scaled(boot_slope, gap)
    out.append(
        head | common | {"estimate": "matched_difference_predicted", "arch": name, "value": slope[0] * gap}
        | {"ci95_low": ci[0], "ci95_high": ci[1], "boot95_low": boot[0], "boot95_high": boot[1]}
        | {"n_seeds": n_seeds, "param_fraction_encoder": gap}
        | {"note": "slope x the difference of the two encoder parameter fractions"}
    )  # fmt: skip
    return out


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
