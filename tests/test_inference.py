"""aedissect.inference: hand computations, scipy, brute-force definitions and Monte Carlo."""

import subprocess
import sys
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import ortho_group

from aedissect import inference, metrics
from conftest import REPO


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- binomial ----


def test_binomial_test_by_hand_and_against_scipy():
    assert inference.binomial_test(9, 10) == pytest.approx(22 / 1024)  # P(X >= 9) + P(X <= 1)
    assert inference.binomial_test(5, 10) == pytest.approx(1.0)
    assert inference.binomial_test(0, 5) == pytest.approx(2 / 32)
    # p = 0.2, n = 3: pmf 0.512, 0.384, 0.096, 0.008; as or less probable than k = 2: k in {2, 3}
    assert inference.binomial_test(2, 3, p=0.2) == pytest.approx(0.104)
    for k, n, p in [(3, 17, 0.5), (12, 20, 0.3), (40, 50, 0.9)]:
        assert inference.binomial_test(k, n, p) == pytest.approx(stats.binomtest(k, n, p).pvalue, rel=1e-12)


def test_clopper_pearson_closed_forms_and_coverage():
    n, alpha = 12, 0.05
    assert inference.clopper_pearson(0, n) == pytest.approx((0.0, 1 - (alpha / 2) ** (1 / n)))
    assert inference.clopper_pearson(n, n) == pytest.approx(((alpha / 2) ** (1 / n), 1.0))
    lo, hi = inference.clopper_pearson(4, n)
    assert lo == pytest.approx(stats.beta.ppf(alpha / 2, 4, n - 4 + 1))
    assert hi == pytest.approx(stats.beta.ppf(1 - alpha / 2, 4 + 1, n - 4))
    intervals = [inference.clopper_pearson(k, n) for k in range(n + 1)]
    for p in np.linspace(0.01, 0.99, 50):  # exact coverage, summed over the binomial pmf, never below the level
        covered = sum(stats.binom.pmf(k, n, p) for k, (lo, hi) in enumerate(intervals) if lo <= p <= hi)
        assert covered >= 0.95 - 1e-12


# ---- hierarchical bootstrap ----


def clustered(n_clusters=5, n_units=6, spread=2.0, noise=0.5, seed=0):
    r = rng(seed)
    rows = [
        {"arch": f"a{c}", "seed": s, "value": spread * c + noise * r.normal()}
        for c in range(n_clusters)
        for s in range(n_units)
    ]
    return pd.DataFrame(rows)


def test_bootstrap_is_reproducible_and_contains_the_mean():
    df = clustered()
    ci = inference.hierarchical_bootstrap_ci(df, "value", seed=3)
    assert ci == inference.hierarchical_bootstrap_ci(df, "value", seed=3)
    assert ci != inference.hierarchical_bootstrap_ci(df, "value", seed=4)
    assert ci[0] < df["value"].mean() < ci[1]
    lo, hi = inference.hierarchical_bootstrap_ci(df, "value", stat=np.median)
    assert lo <= df["value"].median() <= hi


def test_bootstrap_widens_when_clusters_differ():
    df = clustered(spread=2.0, noise=0.5)
    lo, hi = inference.hierarchical_bootstrap_ci(df, "value")
    plain_lo, plain_hi = inference.hierarchical_bootstrap_ci(df, "value", cluster=None)
    assert hi - lo > 3 * (plain_hi - plain_lo)
    # the width is then set by the cluster means: about a t-interval over them
    means = df.groupby("arch")["value"].mean()
    t_width = 2 * stats.t.ppf(0.975, means.size - 1) * means.std(ddof=1) / np.sqrt(means.size)
    assert 0.4 * t_width < hi - lo < 1.2 * t_width
    # identical clusters: only the two-stage bootstrap's known conservativeness is left
    same = clustered(spread=0.0, noise=0.5)
    width = np.subtract(*inference.hierarchical_bootstrap_ci(same, "value")[::-1])
    plain = np.subtract(*inference.hierarchical_bootstrap_ci(same, "value", cluster=None)[::-1])
    assert plain < width < 2 * plain  # resampling at both stages counts the within-cluster spread about twice


def test_bootstrap_single_cluster_is_the_ordinary_bootstrap():
    values = rng(5).normal(size=40)
    df = pd.DataFrame({"arch": "only", "seed": range(40), "value": values})
    ci = inference.hierarchical_bootstrap_ci(df, "value", n_boot=4000)
    assert ci == inference.hierarchical_bootstrap_ci(df, "value", cluster=None, n_boot=4000)
    assert ci == inference.hierarchical_bootstrap_ci(df, "value", cluster=None, unit=None, n_boot=4000)
    r = rng(6)  # an independent percentile bootstrap of the mean
    boots = values[r.integers(40, size=(4000, 40))].mean(axis=1)
    expected = np.quantile(boots, [0.025, 0.975])
    assert ci[1] - ci[0] == pytest.approx(expected[1] - expected[0], rel=0.1)
    assert ci == pytest.approx(tuple(expected), abs=0.05)


def test_bootstrap_degenerate_and_ragged_inputs():
    single = pd.DataFrame({"arch": ["a"], "seed": [0], "value": [1.5]})
    assert inference.hierarchical_bootstrap_ci(single, "value") == (1.5, 1.5)
    empty = pd.DataFrame({"arch": ["a"], "seed": [0], "value": [np.nan]})
    assert all(np.isnan(inference.hierarchical_bootstrap_ci(empty, "value")))
    df = clustered()
    with_nan = pd.concat([df, pd.DataFrame({"arch": ["a0"], "seed": [99], "value": [np.nan]})], ignore_index=True)
    assert inference.hierarchical_bootstrap_ci(with_nan, "value") == inference.hierarchical_bootstrap_ci(df, "value")
    # a unit's rows travel together: every row twice gives the same draws and so the same mean
    doubled = pd.concat([df, df], ignore_index=True).sample(frac=1.0, random_state=0)
    assert inference.hierarchical_bootstrap_ci(doubled, "value") == pytest.approx(
        inference.hierarchical_bootstrap_ci(df, "value"), rel=1e-12
    )


# ---- Shapley shares ----


def shapley_by_orders(L_full, L_enc, L_dec, L_both):
    """Shapley values from the definition: the mean marginal value over both orders of joining.

    v(S) is the loss removed from L_both by training the parts in S; training only the encoder leaves the
    decoder frozen, so its loss is L_dec.
    """
    loss = {
        frozenset(): L_both,
        frozenset({"enc"}): L_dec,
        frozenset({"dec"}): L_enc,
        frozenset({"enc", "dec"}): L_full,
    }
    phi = {"enc": 0.0, "dec": 0.0}
    for order in permutations(phi):
        joined = frozenset()
        for player in order:
            phi[player] += (loss[joined] - loss[joined | {player}]) / 2
            joined = joined | {player}
    return phi


@pytest.mark.parametrize(
    "table, share, loo",
    [((4.0, 6.0, 8.0, 10.0), 1 / 3, 1 / 3), ((3.0, 5.0, 9.0, 10.0), 3 / 14, 1 / 4), ((2.0, 9.0, 9.0, 10.0), 0.5, 0.5)],
)
def test_shapley_hand_tables(table, share, loo):
    out = inference.shapley_shares(*table)
    phi = shapley_by_orders(*table)
    assert out["phi_enc"] == pytest.approx(phi["enc"])
    assert out["phi_dec"] == pytest.approx(phi["dec"])
    assert out["share"] == pytest.approx(share)
    assert out["loo_share"] == pytest.approx(loo)
    assert out["share_reason"] == out["loo_reason"] == ""
    assert isinstance(out["share"], float)


def test_shapley_efficiency_symmetry_and_vectorised():
    r = rng(7)
    L_both = r.uniform(5, 10, 200)
    L_full = r.uniform(0, 2, 200)
    L_enc, L_dec = r.uniform(1, 8, 200), r.uniform(1, 8, 200)
    out = inference.shapley_shares(L_full, L_enc, L_dec, L_both)
    np.testing.assert_allclose(out["phi_enc"] + out["phi_dec"], L_both - L_full)
    for i in range(0, 200, 37):
        assert out["phi_enc"][i] == pytest.approx(shapley_by_orders(L_full[i], L_enc[i], L_dec[i], L_both[i])["enc"])
    sym = inference.shapley_shares(L_full, L_enc, L_enc, L_both)
    np.testing.assert_allclose(sym["share"], 0.5)
    np.testing.assert_allclose(sym["loo_share"][L_enc > L_full], 0.5)
    df = pd.DataFrame({"full": L_full, "enc": L_enc, "dec": L_dec, "both": L_both}, index=range(100, 300))
    by_series = inference.shapley_shares(df["full"], df["enc"], df["dec"], df["both"])
    assert isinstance(by_series["share"], pd.Series) and list(by_series["share"].index) == list(df.index)
    np.testing.assert_allclose(by_series["share"].to_numpy(), out["share"])


def test_shapley_undefined_shares_say_why():
    out = inference.shapley_shares([1.0, 2.0, np.nan], [3.0, 1.0, 3.0], [2.0, 1.5, 2.0], [1.0, 4.0, 5.0])
    assert np.isnan(out["share"][0]) and "L_both - L_full <= 0" in out["share_reason"][0]
    assert out["loo_share"][0] == pytest.approx(2 / 3)
    assert np.isnan(out["loo_share"][1]) and "<= 0" in out["loo_reason"][1]
    assert out["share"][1] == pytest.approx(inference.shapley_shares(2.0, 1.0, 1.5, 4.0)["share"])
    assert np.isnan(out["share"][2]) and out["share_reason"][2] == "a loss is missing"


# ---- TwoNN maximum likelihood ----


def cube(n, d, ambient=10, seed=0):
    basis = ortho_group.rvs(ambient, random_state=seed + 50)[:d]
    return rng(seed).uniform(size=(n, d)) @ basis


@pytest.mark.parametrize("d", [2, 3])
def test_twonn_mle_recovers_a_cube_within_its_standard_error(d):
    est = inference.twonn_mle(cube(2000, d, seed=d))
    assert est["n"] == 2000
    assert est["se"] == pytest.approx(est["dimension"] / np.sqrt(1998))
    assert abs(est["dimension"] - d) < 4 * est["se"]
    assert est["ci_low"] < est["dimension"] < est["ci_high"]
    assert est["dimension"] == pytest.approx(metrics.twonn_dimension(cube(2000, d, seed=d)), rel=0.1)


def test_twonn_mle_spread_over_clouds_shrinks_as_one_over_root_n_and_is_near_the_standard_error():
    """Over independent clouds the estimate's spread halves from N = 250 to 1000. It is somewhat above the
    i.i.d. SE, since neighbouring points share neighbours (1.1 to 1.5 times it in longer runs)."""
    spread, se = {}, {}
    for n in (250, 1000):
        fits = [inference.twonn_mle(cube(n, 2, seed=s)) for s in range(50)]
        spread[n] = np.std([f["dimension"] for f in fits], ddof=1)
        se[n] = np.mean([f["se"] for f in fits])
        assert 0.9 < spread[n] / se[n] < 1.8
    assert spread[1000] / spread[250] == pytest.approx(0.5, rel=0.3)
    assert se[1000] / se[250] == pytest.approx(np.sqrt(248 / 998), rel=0.05)


def test_twonn_mle_drops_duplicates():
    H = cube(500, 2, seed=4)
    est = inference.twonn_mle(np.vstack([H, H[:20]]))
    assert est["n"] == 480 and np.isfinite(est["dimension"])


@pytest.mark.parametrize("d", [2.0, 5.0])
def test_twonn_mle_standard_error_and_interval_on_exact_pareto_ratios(d):
    """mu drawn from Pareto(d) itself: the estimator is unbiased, its spread is the formula's, the interval covers."""
    n, reps = 50, 4000
    mu = 1.0 + rng(int(d)).pareto(d, size=(reps, n))  # numpy's pareto is the Lomax; shifted by 1 it is Pareto(d)
    fits = [inference.twonn_mle_from_ratios(row) for row in mu]
    estimates = np.array([f["dimension"] for f in fits])
    assert estimates.mean() == pytest.approx(d, abs=4 * estimates.std() / np.sqrt(reps))
    assert estimates.std(ddof=1) == pytest.approx(d / np.sqrt(n - 2), rel=0.06)
    assert np.mean([f["se"] for f in fits]) == pytest.approx(estimates.std(ddof=1), rel=0.08)
    coverage = np.mean([f["ci_low"] <= d <= f["ci_high"] for f in fits])
    assert coverage == pytest.approx(0.95, abs=0.015)
    mle = n / np.log(mu).sum(axis=1)  # the plain MLE is biased upwards by n / (n - 1)
    assert mle.mean() == pytest.approx(d * n / (n - 1), rel=0.01)


def test_twonn_mle_too_few_ratios_is_nan():
    assert np.isnan(inference.twonn_mle_from_ratios([1.5, 2.0])["dimension"])
    assert set(inference.twonn_mle_from_ratios([1.5, 2.0], level=None)) == {"dimension", "se", "n"}


def test_twonn_mle_without_the_interval_is_the_same_estimate_and_leaves_scipy_stats_unloaded():
    mu = 1.0 + rng(8).pareto(3.0, size=200)
    full, bare = inference.twonn_mle_from_ratios(mu), inference.twonn_mle_from_ratios(mu, level=None)
    assert bare == {key: full[key] for key in ("dimension", "se", "n")}
    code = (
        "import sys\nfrom aedissect import inference\n"
        "inference.twonn_mle_from_ratios([1.5, 2.0, 3.0, 1.2], level=None)\nassert 'scipy.stats' not in sys.modules"
    )
    # run from workflow/: the package of this checkout, whatever the venv has installed
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO / "workflow")
    assert proc.returncode == 0, proc.stderr[-1500:]
