"""Summaries over seeds: mean, standard deviation, n and a Student-t 95% confidence interval."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean, sample std, n and the t-interval for the mean; the interval is NaN for n < 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    mean = x.mean() if n else np.nan
    std = x.std(ddof=1) if n > 1 else np.nan
    from scipy import stats  # 0.7 s of import that the truncate job (which reads this module's columns) skips

    half = stats.t.ppf(0.5 + level / 2, n - 1) * std / np.sqrt(n) if n > 1 else np.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def summarize(long: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Summarise a tidy table over seeds: one row per group of ``by`` with mean, std, n and CI."""
    rows = []
    for key, group in long.groupby(by, sort=True, dropna=False):
        rows.append(dict(zip(by, key, strict=True)) | mean_ci(group[value]))
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "ci95_low", "ci95_high"])
