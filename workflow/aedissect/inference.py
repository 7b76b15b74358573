"""Statistics a reader can trust: exact binomial tests, a hierarchical bootstrap, Shapley shares of a loss
between encoder and decoder, and the maximum-likelihood TwoNN dimension with its standard error.

numpy, scipy and pandas only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from aedissect.metrics import two_nearest_distances


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial p-value of k successes in n trials under success probability p.

    Outcomes at most as probable as k count as extreme (scipy.stats.binomtest), e.g. "seeds where the
    encoder carries more of the loss than the decoder" against a coin flip.
    """
    from scipy import stats  # 0.7 s of import: not at module level, which every torch job loads

    return float(stats.binomtest(int(k), int(n), p).pvalue)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper & Pearson 1934) interval for a binomial proportion from k successes in n trials.

    lo = Beta quantile (1 - level)/2 of Beta(k, n - k + 1), hi = quantile (1 + level)/2 of Beta(k + 1, n - k);
    0 and 1 at k = 0 and k = n. Conservative: coverage is at least ``level`` for every p.
    """
    from scipy import stats

    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _ragged_take(starts: np.ndarray, counts: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Row indices of the chosen units, each unit being rows starts[u] .. starts[u] + counts[u] - 1."""
    c = counts[chosen]
    offsets = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
    return np.repeat(starts[chosen], c) + offsets


def hierarchical_bootstrap_ci(
    df: pd.DataFrame,
    value: str,
    cluster: str | None = "arch",
    unit: str | None = "seed",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    stat: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float]:
    """Percentile interval of ``stat`` over a two-level bootstrap (Davison & Hinkley 1997, "Hierarchical data").

    Each replicate draws as many clusters as there are, with replacement, then within every drawn cluster as
    many units as it has, with replacement, and applies ``stat`` to the values of all rows of the drawn
    units (a unit may have several rows). Resampling the clusters carries their between-cluster spread into the
    interval, which an ordinary bootstrap over units pooled across clusters would leave out. ``cluster=None``
    makes one cluster (the ordinary bootstrap over units); ``unit=None`` makes every row a unit. Rows with a
    non-finite value are dropped; no rows left gives (NaN, NaN). Deterministic for a ``seed``.

    Resampling at both stages is conservative: the within-cluster spread enters once through the drawn
    clusters' means and again through the drawn units, so with C identical clusters of m units the bootstrap
    variance of the mean is about (2 - 1/C - 1/m) times the ordinary one (Davison & Hinkley discuss the alternative
    of keeping drawn clusters whole). With few units per cluster that is the safe side to err on.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    data = df[np.isfinite(df[value].to_numpy(dtype=np.float64))]
    if data.empty:
        return float("nan"), float("nan")
    cluster_code = pd.factorize(data[cluster], sort=True)[0] if cluster else np.zeros(len(data), dtype=np.int64)
    unit_code = pd.factorize(data[unit], sort=True)[0] if unit else np.arange(len(data))
    order = np.lexsort((unit_code, cluster_code))
    values = data[value].to_numpy(dtype=np.float64)[order]
    cluster_code, unit_code = cluster_code[order], unit_code[order]
    # a unit is one (cluster, unit) pair: the same seed number in two clusters is two different runs
    new_unit = np.r_[True, (cluster_code[1:] != cluster_code[:-1]) | (unit_code[1:] != unit_code[:-1])]
    starts = np.flatnonzero(new_unit)
    counts = np.diff(np.r_[starts, len(values)])
    unit_cluster = cluster_code[starts]
    units_of = [np.flatnonzero(unit_cluster == c) for c in range(unit_cluster.max() + 1)]
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        clusters = rng.integers(len(units_of), size=len(units_of))
        chosen = np.concatenate([units_of[c][rng.integers(units_of[c].size, size=units_of[c].size)] for c in clusters])
        boots[b] = stat(values[_ragged_take(starts, counts, chosen)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def shapley_shares(L_full, L_enc, L_dec, L_both) -> dict:
    """Two-player Shapley attribution of a loss reduction to training the encoder and training the decoder.

    The losses of one setting trained four ways: ``L_full`` both trained, ``L_enc`` the ENCODER frozen at init,
    ``L_dec`` the DECODER frozen, ``L_both`` both frozen. The value of a coalition is the loss it removes from
    L_both, so (Shapley 1953)

        phi_enc = 1/2 [(L_both - L_dec) + (L_enc - L_full)],  phi_dec = 1/2 [(L_both - L_enc) + (L_dec - L_full)],

    and phi_enc + phi_dec = L_both - L_full (efficiency). Returns

    - ``phi_enc``, ``phi_dec``;
    - ``share`` = phi_enc / (phi_enc + phi_dec), the encoder's share; it leaves [0, 1] when one phi is negative
      (training that part alone made the loss worse);
    - ``loo_share`` = (L_enc - L_full) / ((L_enc - L_full) + (L_dec - L_full)), the encoder's share of the
      leave-one-out losses (what freezing each part alone costs), which ignores L_both;
    - ``share_reason``, ``loo_reason``: why the share is NaN ("" when it is not): a missing loss, or a
      denominator <= 0 (training did not lower the loss, so there is nothing to share).

    Scalars give floats and strings; arrays give arrays, and pandas Series give Series on the first Series'
    index, so a table's columns can be passed directly.
    """
    inputs = (L_full, L_enc, L_dec, L_both)
    index = next((x.index for x in inputs if isinstance(x, pd.Series)), None)
    full, enc, dec, both = (np.asarray(x, dtype=np.float64) for x in inputs)
    phi_enc = 0.5 * ((both - dec) + (enc - full))
    phi_dec = 0.5 * ((both - enc) + (dec - full))

    def ratio(num, den, what):
        missing = np.isnan(num) | np.isnan(den)
        bad = ~missing & ~(den > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(missing | bad, np.nan, num / den)
        reason = np.where(
            missing, "a loss is missing", np.where(bad, f"{what} <= 0: training did not lower the loss", "")
        )
        return out, reason

    share, share_reason = ratio(phi_enc, phi_enc + phi_dec, "L_both - L_full")
    loo_share, loo_reason = ratio(enc - full, (enc - full) + (dec - full), "(L_enc - L_full) + (L_dec - L_full)")
    out = {
        "phi_enc": phi_enc,
        "phi_dec": phi_dec,
        "share": share,
        "loo_share": loo_share,
        "share_reason": share_reason,
        "loo_reason": loo_reason,
    }
    if index is not None:
        return {k: pd.Series(v, index=index, name=k) for k, v in out.items()}
    if phi_enc.ndim == 0:
        return {k: (str(v) if v.dtype.kind == "U" else float(v)) for k, v in out.items()}
    return out


def twonn_mle_from_ratios(mu, level: float | None = 0.95) -> dict:
    """The TwoNN dimension from the ratios mu_i = r2 / r1 >= 1, by maximum likelihood with its standard error.

    Facco et al. (2017): under local uniformity mu_i is Pareto(d) on [1, inf), P(mu > t) = t^-d, so
    log mu_i ~ Exponential(rate d) and S = sum_i log mu_i ~ Gamma(N, rate d). The MLE N / S is biased
    (E[1/S] = d / (N - 1)); the estimate here is the unbiased d_hat = (N - 1) / S. From
    E[1/S^2] = d^2 / ((N - 1)(N - 2)), Var(d_hat) = d^2 / (N - 2), so se = d_hat / sqrt(N - 2). Since d S ~
    Gamma(N, 1) is a pivot, [g_lo / S, g_hi / S] with g the Gamma(N, 1) quantiles (1 -+ level)/2 is an exact
    interval. These assume independent mu_i; on a point cloud neighbouring points share neighbours, so they are
    the i.i.d. idealisation: on uniform 2- and 3-cubes of 250 to 1,000 points the spread of d_hat over
    independent clouds is 1.1 to 1.5 times this se (``metrics.twonn_subsamples`` shows the spread in practice).

    Returns ``dimension``, ``se``, ``n`` (the ratios used) and, unless ``level`` is None, ``ci_low`` and
    ``ci_high``; NaN below 3 ratios. Without the interval scipy.stats (0.4-1 s of import) is not loaded: the
    truncate job keeps only the estimate and its se.
    """
    mu = np.asarray(mu, dtype=np.float64).ravel()
    n = mu.size
    total = float(np.sum(np.log(mu)))
    if n < 3 or not total > 0:
        nan = float("nan")
        interval = {} if level is None else {"ci_low": nan, "ci_high": nan}
        return {"dimension": nan, "se": nan} | interval | {"n": n}
    dimension = (n - 1) / total
    out = {"dimension": dimension, "se": dimension / np.sqrt(n - 2)}
    if level is not None:
        from scipy import stats

        g_lo, g_hi = stats.gamma.ppf([(1 - level) / 2, (1 + level) / 2], n)
        out |= {"ci_low": float(g_lo / total), "ci_high": float(g_hi / total)}
    return out | {"n": n}


def twonn_mle(H, level: float = 0.95) -> dict:
    """Maximum-likelihood TwoNN dimension of a point cloud (n, features), with its standard error.

    ``twonn_mle_from_ratios`` on every point's r2 / r1 (points with r1 = 0, duplicates, dropped as in
    ``metrics.twonn_dimension``). Unlike that regression estimate, no tail of the ratios is discarded, so the
    two differ slightly.
    """
    r = two_nearest_distances(H)
    keep = r[:, 0] > 0
    return twonn_mle_from_ratios(r[keep, 1] / r[keep, 0], level)
