"""The paper target: findings and verdict rules, tables as LaTeX/Markdown, the studies' job counts (dry runs)
and every figure and table docs/outputs.md names, produced on the tiny study."""

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from aedissect import formatting
from aedissect.analysis import calibration, compression, findings, paper, paper_outline, style
from aedissect.analysis.stats import mean_ci
from aedissect.config import validate
from conftest import REPO, SCHEMA, load_yaml, snakemake

matplotlib.use("Agg")

# the docs pages these tests hold to the workflow: the jobs per study, the files of results/paper/
PAPER_DOC = (REPO / "docs" / "paper.md").read_text()
OUTPUTS_DOC = (REPO / "docs" / "outputs.md").read_text()
STUDIES = ["mnist", "fashion_mnist", "cifar10"]
# studies on data that generates or ships offline, sized for 2 cores: every family and experiment, fewer bottlenecks
OFFLINE_STUDIES = ["shapes", "mnist1d", "mnist5k"]


# ---------------------------------------------------------------- findings: per-run quantities


def profile(run_id, values, bottleneck_cut, metric="twonn"):
    """A layer profile of one run: one value per cut 0..L."""
    L = len(values) - 1
    side = [
        "encoder" if c < bottleneck_cut else "bottleneck" if c == bottleneck_cut else "decoder" for c in range(L + 1)
    ]
    return pd.DataFrame(
        {"run_id": run_id, "cut": range(L + 1), "side": side, "metric": metric, "value": np.asarray(values, float)}
    )


def test_completion_cut_is_the_first_cut_near_the_minimum():
    cuts = [1, 2, 3, 4]
    # the minimum is at cut 4, but cut 2 is already within 10% of it: compression completes at 2
    assert compression.completion_cut(cuts, [9.0, 5.2, 5.1, 5.0], tolerance=0.1) == (2, 4)
    assert compression.completion_cut(cuts, [9.0, 5.2, 5.1, 5.0], tolerance=0.0) == (4, 4)
    # order of the rows does not matter, NaN is skipped
    assert compression.completion_cut([4, 3, 2, 1], [5.0, np.nan, 5.2, 9.0], tolerance=0.1) == (2, 4)


def test_compression_offsets_are_relative_to_the_bottleneck_and_ignore_input_and_output():
    # L = 5, bottleneck cut 3; the input (cut 0) and the output (cut 5) have the lowest values but do not count
    table = pd.concat(
        [
            profile("a/s0", [0.1, 8, 4, 6, 7, 0.1], 3),  # minimum at cut 2: inside the encoder, offset -1
            profile("b/s0", [0.1, 8, 7, 6, 3, 0.1], 3),  # minimum at cut 4: inside the decoder, offset +1
            profile("b/s0", [0.1, 8, 7, 6, 3, 0.1], 3, metric="twonn_sub_mean"),  # not a compression metric
            profile("c/s0", [50, 40, 30, 20, 30, 50], 3, metric="participation_ratio"),
        ]
    )
    out = findings.compression_offsets(table, tolerance=0.0).set_index(["run_id", "quantity"])["value"]
    assert out[("a/s0", "twonn_min_offset")] == -1 and out[("a/s0", "twonn_completion_offset")] == -1
    assert out[("b/s0", "twonn_min_offset")] == 1
    assert out[("c/s0", "pr_min_offset")] == 0
    assert len(out) == 6


def test_findings_take_the_encoder_share_from_its_table_and_it_is_symmetric():
    from aedissect.analysis.intervention_tables import DECODER_SPECS, encoder_share

    assert set(findings.SHARE_QUANTITIES) == set(DECODER_SPECS)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        full = rng.uniform(0.1, 0.2)
        losses = {"none": full, "encoder": full + rng.uniform(0, 1)}
        losses |= {"decoder": full + rng.uniform(0, 1), "decoder+bias": full + rng.uniform(0, 1)}
        for spec, loss in losses.items():
            rows.append({"run_id": f"r{i}", "freeze": spec, "test_loss": loss, "test_mse": loss / 2})
    wide = pd.DataFrame(rows)
    ours = findings.encoder_shares(encoder_share(wide)).set_index(["quantity", "run_id"])["value"]
    # computed independently from the losses: (L_enc - L) / ((L_enc - L) + (L_dec - L))
    loss = wide.pivot(index="run_id", columns="freeze", values="test_loss")
    for quantity, spec in (("encoder_share", "decoder+bias"), ("encoder_share_frozen_output_bias", "decoder")):
        enc, dec = loss["encoder"] - loss["none"], loss[spec] - loss["none"]
        np.testing.assert_allclose(ours[quantity].sort_index(), (enc / (enc + dec)).sort_index(), rtol=1e-12)
    assert ((ours > 0) & (ours < 1)).all()
    # the share is the complement of the one with the sides' losses swapped
    share = ours["encoder_share"].sort_index()
    swapped = wide.replace({"freeze": {"encoder": "decoder+bias", "decoder+bias": "encoder"}})
    mirror = findings.encoder_shares(encoder_share(swapped)).set_index(["quantity", "run_id"])["value"]
    np.testing.assert_allclose(mirror["encoder_share"].sort_index(), 1 - share, rtol=1e-12)


def test_encoder_share_is_nan_without_a_loss_increase():
    from aedissect.analysis.intervention_tables import encoder_share

    wide = pd.DataFrame(
        {
            "run_id": ["r"] * 3 + ["q"] * 3 + ["p"] * 3,
            "freeze": ["none", "encoder", "decoder+bias"] * 3,
            "test_loss": [1, 3, 2, 1, 1, 1, 1, 0.5, 0.9],
            "test_mse": [1, 3, 2, 1, 1, 1, 1, 0.5, 0.9],
        }
    )
    out = findings.encoder_shares(encoder_share(wide)).set_index("run_id")["value"]
    assert out["r"] == pytest.approx(2 / 3)
    assert np.isnan(out["q"]) and np.isnan(out["p"])  # no cost at all; freezing helps in total


def test_stitch_penalty_uses_other_seeds_of_the_same_architecture_only():
    table = pd.DataFrame(
        {
            "run_id_a": ["d/ae/x/z3/relu/s1", "d/ae/x/z3/relu/s2", "d/ae/y/z3/relu/s0", "d/ae/x/z3/relu/s0"],
            "run_id_b": ["d/ae/x/z3/relu/s0"] * 4,
            "stitch": ["trained", "trained", "trained", "trained"],
            "penalty": [0.1, 0.3, 5.0, 7.0],  # other architecture and self: left out
        }
    )
    out = findings.stitch_penalties(findings.stitch_rows(table))
    assert out["value"].tolist() == [pytest.approx(0.2)]


def test_stitch_penalty_reads_the_bottleneck_only():
    table = pd.DataFrame(
        {
            "run_id_a": ["d/ae/x/z3/relu/s1"] * 3,
            "run_id_b": ["d/ae/x/z3/relu/s0"] * 3,
            "stitch": "trained",
            "cut_side": ["encoder", "bottleneck", "decoder"],
            "penalty": [5.0, 0.2, 7.0],
        }
    )
    assert findings.stitch_penalties(findings.stitch_rows(table))["value"].tolist() == [pytest.approx(0.2)]


# ---------------------------------------------------------------- R3: are encoders interchangeable (swap.csv)


def swap_summary(cross: tuple | None, control: tuple | None, family: str = "symmetric") -> pd.DataFrame:
    """swap.csv's family-level rows of one group: (mean, ci95_low, ci95_high) of the cross-architecture swap and of
    its control (same architecture, other seed), and a pair-level row and another metric that R3 does not read."""
    rows = []
    for pair_type, values in (("arch", cross), ("seed", control)):
        if values is None:
            continue
        mean, low, high = values
        common = {"dataset": "d", "kind": "ae", "a_family": family, "pair_type": pair_type, "n": 5}
        common |= {"mean": mean, "ci95_low": low, "ci95_high": high, "std": 0.1}
        rows.append(common | {"level": "family", "metric": findings.SWAP_METRIC})
        rows.append(common | {"level": "family", "metric": "normalised_penalty_mean", "mean": 9.0, "ci95_low": 9.0})
        rows.append(common | {"level": "pair", "metric": findings.SWAP_METRIC, "mean": 9.0, "ci95_low": 9.0})
    return pd.DataFrame(rows)


def verdict_rows(families=("symmetric",)) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "kind": "ae", "family": f, "verdict": "partly"} for f in families])


@pytest.mark.parametrize(
    "cross, control, outcome",
    [
        ((0.05, 0.02, 0.08), (0.01, 0.0, 0.02), "interchangeable"),  # the interval lies below 0.2
        ((0.05, 0.02, 0.08), None, "interchangeable"),  # needs no control
        ((0.5, 0.4, 0.6), (0.05, 0.02, 0.08), "not interchangeable"),  # above, and the control below
        ((0.5, 0.4, 0.6), (0.5, 0.3, 0.7), "undecided"),  # above, but the stitch fails within one architecture too
        ((0.5, 0.4, 0.6), None, "undecided"),  # above, and no control
        ((0.2, 0.1, 0.3), (0.05, 0.02, 0.08), "undecided"),  # the interval contains the threshold
        ((0.05, float("nan"), float("nan")), (0.01, 0.0, 0.02), "no data"),  # one seed: no interval
        (None, (0.01, 0.0, 0.02), "no data"),  # no other architecture in the group
    ],
)
def test_the_swap_rule_on_hand_made_numbers(cross, control, outcome):
    assert findings.SWAP_THRESHOLD == 0.2
    table = findings.with_swap_rule(verdict_rows(), swap_summary(cross, control))
    row = table.iloc[0]
    assert row["swap"] == outcome
    assert row["verdict"] == "partly", "R3 is reported beside the verdict, never changes it"
    assert list(table.columns) == ["dataset", "kind", "family", "verdict", *findings.SWAP_RULE_COLUMNS]
    assert row["swap_sentence"].startswith(f"R3 (swap): {outcome}")
    assert bool(row["swap_reason"]) == (outcome in ("undecided", "no data"))
    if cross is not None:
        assert row["swap_mean"] == cross[0] and (row["swap_ci95_high"] == cross[2] or np.isnan(cross[2]))
    if outcome == "not interchangeable":
        assert "another seed" in row["swap_sentence"] and row["swap_control_ci95_high"] == control[2]


def test_the_swap_rule_reads_its_own_family_and_goes_into_findings_md():
    control = (0.01, 0.0, 0.02)
    swap = pd.concat([swap_summary((0.05, 0.02, 0.08), control), swap_summary((0.5, 0.4, 0.6), control, "linear")])
    table = findings.with_swap_rule(verdict_rows(("symmetric", "linear", "encoder-heavy")), swap)
    assert table.set_index("family")["swap"].to_dict() == {
        "symmetric": "interchangeable", "linear": "not interchangeable", "encoder-heavy": "no data",
    }  # fmt: skip
    assert findings.with_swap_rule(verdict_rows(), None)["swap"].tolist() == ["no data"]
    per_run = pd.concat(
        [
            per_run_table({0: [-1, -1], 1: [-1, 0], 2: [0, 0]}),
            per_run_table({0: [0.8, 0.9], 1: [0.7, 0.8], 2: [0.9, 0.8]}, quantity="encoder_share"),
        ]
    )
    summary = findings.summarize_groups(per_run)
    verdicts = findings.verdicts(summary)
    swapped = findings.with_swap_rule(verdicts, swap_summary((0.05, 0.02, 0.08), None, verdicts["family"].iloc[0]))
    text = findings.markdown(summary, swapped, {}, 0.1, 0.66)
    assert f"- {swapped['swap_sentence'].iloc[0]}" in text
    assert "R3 swap, reported beside the verdict" in text and "below 0.2" in text
    assert "R3" not in findings.markdown(summary, verdicts, {}, 0.1, 0.66)
    assert paper.verdict_table(swapped).columns[-1] == "R3 (beside)"


def test_critical_encoder_fraction_and_text():
    crit = pd.DataFrame(
        {
            "run_id": ["a/s0"] * 3 + ["a/s1"] * 3,
            "layer": ["enc1", "bottleneck", "output"] * 2,
            "side": ["encoder", "bottleneck", "decoder"] * 2,
            "critical": [True, False, True, False, False, True],
        }
    )
    out = findings.critical_layers(findings.criticality_rows(crit.assign(intervention="reinit")))
    out = out.set_index(["run_id", "quantity"])["value"]
    assert out["a/s0", "critical_encoder_fraction"] == 0.5 and out["a/s1", "critical_encoder_fraction"] == 0.0
    assert out["a/s0", "critical_bottleneck_fraction"] == 0.0
    assert np.isnan(out["a/s0", "critical_encoder_param_fraction"])  # an old table: no parameter counts
    runs = pd.DataFrame(
        {"run_id": ["a/s0", "a/s1"], "dataset": "d", "kind": "ae", "family": "symmetric", "arch": "x", "bottleneck": 3}
    )
    text = findings.critical_layer_text(crit, runs, majority=0.66)[("d", "ae", "symmetric")]
    assert text == "x: output (2/2)"  # enc1 is critical in 1 of 2 seeds only


def test_critical_layers_read_the_normalised_damage_per_layer_and_per_parameter_bottleneck_apart():
    # damage = (MSE_reinit - MSE) / (MSE_mean_predictor - MSE); critical at >= 0.5
    table = pd.DataFrame(
        {
            "run_id": ["r"] * 4 + ["q"] * 4 + ["p"] * 4,
            "intervention": "reinit",
            "layer_name": ["enc1", "enc2", "bottleneck", "output"] * 3,
            "side": ["encoder", "encoder", "bottleneck", "decoder"] * 3,
            "params": [100, 50, 30, 20] * 3,
            "damage": [0.9, 0.2, 0.5, 1.4] + [0.1, 0.0, 0.3, 0.4] + [np.nan] * 4,
            "critical": False,  # the ratio rule's flag: not read where there is a damage
        }
    )
    rows = findings.criticality_rows(pd.concat([table, table.assign(intervention="trained", damage=0.0)]))
    assert rows["critical"].tolist()[:4] == [1.0, 0.0, 1.0, 1.0]
    out = findings.critical_layers(rows).set_index(["run_id", "quantity"])["value"]
    # r: enc1, the bottleneck layer and the output layer are critical
    assert out["r", "critical_encoder_fraction"] == pytest.approx(1 / 3)
    assert out["r", "critical_bottleneck_fraction"] == pytest.approx(1 / 3)
    assert out["r", "critical_encoder_param_fraction"] == pytest.approx(100 / 150)
    assert out["r", "critical_bottleneck_param_fraction"] == pytest.approx(30 / 150)
    # q: nothing is critical; p: the model is no better than the mean predictor, the damage has no scale
    fractions = out.drop(index=findings.UNSCALED, level="quantity")
    assert fractions["q"].isna().all() and fractions["p"].isna().all() and len(fractions) == 3 * 4
    assert out.xs(findings.UNSCALED, level="quantity").to_dict() == {"r": 0.0, "q": 0.0, "p": 1.0}
    assert findings.no_critical_text({"n_above": 1, "n_runs": 3}).endswith(
        "1 of 3 models no better than the mean predictor)"
    )
    assert findings.no_critical_text({"n_above": 3, "n_runs": 3}) == (
        "n/a (no model beats the mean predictor: the damage has no scale)"
    )
    runs = pd.DataFrame({"run_id": ["r", "q", "p"], "dataset": "d", "kind": "ae", "family": "f", "arch": "x"})
    runs = runs.assign(bottleneck=3)
    text = findings.critical_layer_text(rows, runs, majority=0.3)[("d", "ae", "f")]
    assert text == "x: enc1 (1/3), bottleneck (1/3), output (1/3)"


# ---------------------------------------------------------------- summaries and verdict rules


def per_run_table(values_by_seed: dict, quantity="twonn_completion_offset", archs=("x", "y")):
    rows = []
    for seed, values in values_by_seed.items():
        for arch, value in zip(archs, values, strict=True):
            rows.append(
                {"run_id": f"d/ae/{arch}/z3/relu/s{seed}", "dataset": "d", "kind": "ae", "family": "symmetric"}
                | {"arch": arch, "bottleneck": 3, "seed": seed, "quantity": quantity, "value": value}
            )
    return pd.DataFrame(rows)


def test_summary_averages_each_seed_over_the_family_first_and_counts_runs():
    table = per_run_table({0: [-1, 1], 1: [0, 0], 2: [-2, -1]})
    row = findings.summarize_groups(table).iloc[0]
    per_seed = [0.0, 0.0, -1.5]
    expected = mean_ci(per_seed)
    assert row["n"] == 3 and row["n_runs"] == 6
    assert row["mean"] == pytest.approx(np.mean(per_seed))
    assert row["ci95_low"] == pytest.approx(expected["ci95_low"]) and row["ci95_high"] == pytest.approx(
        expected["ci95_high"]
    )
    assert (row["n_below"], row["n_at"], row["n_above"]) == (3, 2, 1)


@pytest.mark.parametrize(
    ("offsets", "outcome", "k"),
    [
        ({0: [-1, 0], 1: [0, -2], 2: [0, 1]}, "encoder", 5),  # 5 of 6 >= 0.66 * 6
        ({0: [1, 1], 1: [2, 1], 2: [0, 1]}, "decoder", 1),
        ({0: [1, 0], 1: [0, 1], 2: [0, 1]}, "mixed", 3),
    ],
)
def test_rule_r1_counts_models_that_complete_compression_by_the_bottleneck(offsets, outcome, k):
    summary = findings.summarize_groups(per_run_table(offsets))
    result = findings.verdict(summary, majority=0.66)
    assert (result["compression"], result["compression_k"], result["compression_n"]) == (outcome, k, 6)
    assert f"in {k} of 6 models" in result["sentence"]


def test_rule_r2_reads_the_confidence_interval_against_one_half():
    base = {"n": 3, "mean": 0.0}
    assert calibration.rule_work(base | {"ci95_low": 0.55, "ci95_high": 0.9}) == "encoder"
    assert calibration.rule_work(base | {"ci95_low": 0.1, "ci95_high": 0.45}) == "decoder"
    assert calibration.rule_work(base | {"ci95_low": 0.4, "ci95_high": 0.6}) == "even"
    assert calibration.rule_work(base | {"ci95_low": np.nan, "ci95_high": np.nan}) == "no data"
    assert calibration.rule_work(None) == "no data"


def test_verdict_combination_covers_every_outcome():
    assert findings.combine("encoder", "encoder") == "yes"
    assert findings.combine("encoder", "decoder") == "no"
    assert findings.combine("decoder", "even") == "no"
    assert findings.combine("encoder", "even") == "partly"
    assert findings.combine("mixed", "encoder") == "partly"
    assert findings.combine("mixed", "no data") == "undecided"


def test_verdict_uses_the_share_ci_in_its_sentence():
    table = pd.concat(
        [
            per_run_table({0: [-1, -1], 1: [-1, 0], 2: [0, 0]}),
            per_run_table({0: [0.8, 0.9], 1: [0.7, 0.8], 2: [0.9, 0.8]}, quantity="encoder_share"),
        ]
    )
    summary = findings.summarize_groups(table)
    result = findings.verdict(summary)
    assert result["verdict"] == "yes" and result["work"] == "encoder"
    share = summary[summary["quantity"] == "encoder_share"].iloc[0]
    low, high = formatting.number(share["ci95_low"]), formatting.number(share["ci95_high"])
    assert f"[95% CI {low}, {high}]" in result["sentence"]
    table = findings.verdicts(summary)
    text = findings.markdown(summary, table, {}, 0.1, 0.66)
    assert table["sentence"].iloc[0].startswith(result["sentence"].rstrip("."))  # + the Holm-adjusted p
    assert table["sentence"].iloc[0] in text and "## How the verdicts are chosen" in text


# ---------------------------------------------------------------- statistics a reader can trust


def runs_of(family, archs, seeds=(0, 1, 2), bottlenecks=(3,), budget=(40, 64, 0.002)):
    """Config columns of runs: ``archs`` maps arch -> (encoder, decoder) as runs.csv writes them."""
    rows = []
    for arch, (encoder, decoder) in archs.items():
        for z in bottlenecks:
            for seed in seeds:
                rows.append(
                    {"run_id": f"d/ae/{arch}/z{z}/relu/s{seed}", "dataset": "d", "kind": "ae", "family": family}
                    | {"arch": arch, "encoder": encoder, "decoder": decoder, "bottleneck": z, "seed": seed}
                    | dict(zip(findings.BUDGET, budget, strict=True))
                )
    return pd.DataFrame(rows)


def long_table(runs, values: dict) -> pd.DataFrame:
    """Per-run quantities: quantity -> one value per row of ``runs``, joined to the runs' config columns."""
    frames = [runs.assign(quantity=q, value=np.asarray(v, float)) for q, v in values.items()]
    return pd.concat(frames, ignore_index=True)


SYMMETRIC = {"sym": ("16", "16")}


def test_r1_reports_the_exact_binomial_test_of_its_count():
    summary = findings.summarize_groups(per_run_table({0: [-1, 0], 1: [0, -2], 2: [0, 1]}), n_boot=0)
    result = findings.verdict(summary, majority=0.66)
    # k = 5 of 6 against 1/2: as or less probable are 0, 1, 5 and 6 successes: (1 + 6 + 6 + 1) / 64
    assert result["compression_p"] == pytest.approx(14 / 64)
    assert "p = 0.219" in result["sentence"]
    low, high = result["compression_cp_low"], result["compression_cp_high"]
    assert low < 5 / 6 < high and high < 1  # Clopper-Pearson around 5/6
    assert findings.verdicts(summary)["compression_p"].iloc[0] == pytest.approx(14 / 64)


def test_r1_is_also_tested_over_its_cells_and_holm_adjusted_over_the_study():
    # 4 architectures x 2 bottlenecks x 3 seeds: every cell but one has most of its models by the bottleneck
    archs = {a: ("16", "16") for a in "abcd"}
    runs = runs_of("symmetric", archs, bottlenecks=(3, 4))
    offsets = [0, 0, 1] * 7 + [1, 1, 0]
    other = runs_of("decoder-heavy", {"e": ("16", "16"), "f": ("16", "16")})
    table = pd.concat(
        [
            long_table(runs, {"twonn_completion_offset": offsets}),
            long_table(other, {"twonn_completion_offset": [0] * 6}),
        ]
    )
    summary = findings.summarize_groups(table, n_boot=0)
    row = summary[(summary["family"] == "symmetric")].iloc[0]
    assert (row["n_cells"], row["k_cells"], row["n_decisive"]) == (8, 7, 24)
    verdicts = findings.verdicts(summary).set_index("family")
    # 7 of 8 cells: (1 + 8 + 8 + 1) / 256; 2 of 2 cells: 2 / 4; Holm over the two tests
    assert verdicts.loc["symmetric", "compression_cells_p"] == pytest.approx(18 / 256)
    assert verdicts.loc["decoder-heavy", "compression_cells_p"] == pytest.approx(0.5)
    assert verdicts.loc["symmetric", "compression_cells_p_holm"] == pytest.approx(36 / 256)
    assert verdicts.loc["decoder-heavy", "compression_cells_p_holm"] == pytest.approx(0.5)
    assert "in 7 of 8 cells (p = 0.0703)" in verdicts.loc["symmetric", "sentence"]
    assert "Holm-adjusted over the study's 2 R1 tests: p = 0.141" in verdicts.loc["symmetric", "sentence"]


def test_holm_adjusts_step_down_and_leaves_missing_p_values_out():
    adjusted = findings.holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert findings.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_offsets_and_shares_get_a_hierarchical_bootstrap_ci_beside_the_t_interval():
    runs = runs_of("symmetric", {"a": ("16", "16"), "b": ("32-16", "16-32")}, seeds=range(5))
    rng = np.random.default_rng(1)
    table = long_table(
        runs,
        {
            "encoder_share": rng.uniform(0.55, 0.85, len(runs)),
            "twonn_completion_offset": rng.integers(-2, 2, len(runs)),
            "test_mse": rng.uniform(0.1, 0.2, len(runs)),
        },
    )
    summary = findings.summarize_groups(table, n_boot=500).set_index("quantity")
    for quantity in ("encoder_share", "twonn_completion_offset"):
        row = summary.loc[quantity]
        assert np.isfinite(row["boot95_low"]) and row["boot95_low"] <= row["mean"] <= row["boot95_high"], quantity
        assert (row["boot95_low"], row["boot95_high"]) != (row["ci95_low"], row["ci95_high"])
    assert np.isnan(summary.loc["test_mse", "boot95_low"])  # only offsets and shares
    verdict = findings.verdicts(summary.reset_index())
    share = summary.loc["encoder_share"]
    assert verdict["share_boot95_low"].iloc[0] == share["boot95_low"]
    assert verdict["offset_boot95_high"].iloc[0] == summary.loc["twonn_completion_offset", "boot95_high"]
    text = findings.markdown(summary.reset_index(), verdict, {}, 0.1, 0.66)
    low, high = formatting.number(share["boot95_low"]), formatting.number(share["boot95_high"])
    assert f"hierarchical bootstrap 95% CI [{low}, {high}]" in text


def test_a_verdict_that_flips_under_the_sensitivity_sweep_is_marked_fragile():
    # R1 on the edge: 4 of 6 models complete compression by the bottleneck, >= 0.66 * 6 but < 0.8 * 6
    edge = runs_of("symmetric", {"a": ("16", "16"), "b": ("32", "32")})
    offsets = [-1, 0, 0, 1, 0, 1]  # a: seeds 0-2, b: seeds 0-2
    # robust: every model by the bottleneck, a share far above 1/2 in every seed
    robust = runs_of("decoder-heavy", {"c": ("16", "16-32"), "e": ("24", "16-32")})
    table = pd.concat(
        [
            long_table(edge, {"twonn_completion_offset": offsets, "encoder_share": [0.8, 0.82, 0.81] * 2}),
            long_table(robust, {"twonn_completion_offset": [0] * 6, "encoder_share": [0.8, 0.82, 0.81] * 2}),
        ],
        ignore_index=True,
    )
    sweep = findings.sensitivity(table, None, majority=0.66)
    verdicts = findings.mark_fragile(findings.verdicts(findings.summarize_groups(table, n_boot=0)), sweep)
    verdicts = verdicts.set_index("family")
    assert verdicts.loc["symmetric", "verdict"] == verdicts.loc["decoder-heavy", "verdict"] == "yes"
    assert verdicts.loc["symmetric", "fragile"] and not verdicts.loc["decoder-heavy", "fragile"]
    flips = sweep[(sweep["family"] == "symmetric") & (sweep["setting"] == "majority")].set_index("value")
    assert flips.loc[0.8, "verdict"] == "partly" and not flips.loc[0.8, "same_as_baseline"]
    assert flips.loc[0.6, "same_as_baseline"] and flips.loc[0.66, "same_as_baseline"]
    assert "majority 0.8 gives partly" in verdicts.loc["symmetric", "fragile_settings"]
    assert "Fragile: " in verdicts.loc["symmetric", "sentence"]
    assert "Fragile" not in verdicts.loc["decoder-heavy", "sentence"]
    assert sweep[sweep["family"] == "decoder-heavy"]["same_as_baseline"].all()
    # every setting once per group: 3 majorities, 3 seeds left out (no profiles: no R1 band; no gain, no RA margin)
    assert sweep.groupby("family").size().tolist() == [6, 6]
    assert set(sweep["setting"]) == {"majority", "leave-one-seed-out"}


def test_the_tolerance_sweep_recomputes_where_compression_completes():
    # bottleneck cut 2 at 5.4, minimum 5.0 at cut 3: within 10% (and 20%) at the bottleneck, not within 5%
    profiles = pd.concat([profile(f"d/ae/sym/z3/relu/s{s}", [60, 9, 5.4, 5.0, 60], 2) for s in range(3)])
    runs = runs_of("symmetric", SYMMETRIC)
    per_run = findings.quantities(runs, [findings.compression_offsets(profiles, 0.1)])
    sweep = findings.sensitivity(per_run, profiles, majority=0.66)
    by = sweep[sweep["setting"] == "R1 band"].set_index("value")["compression"]
    assert by.to_dict() == {0.0: "decoder", 0.05: "decoder", 0.1: "encoder", 0.2: "encoder"}


def controls_table(budget_epochs=40, **overrides):
    rows = [
        {"check": "pca_reference", "value": 0.23456, "threshold": 0.2, "passed": False, "applies": True},
        {"check": "pca_reference", "value": 0.1, "threshold": 0.2, "passed": True, "applies": True},
        {"check": "linear_vae", "value": np.nan, "threshold": np.nan, "passed": np.nan, "applies": False},
        {"check": "converged", "value": 0.01, "threshold": 0.02, "passed": True, "applies": True},
    ]
    table = pd.DataFrame(rows).assign(run_id="d/ae/sym/z3/relu/s0", epochs=budget_epochs, batch_size=64, lr=0.002)
    return table.assign(**overrides)


def test_a_failed_control_makes_every_verdict_at_its_budget_undecided_and_is_said_first():
    runs = pd.concat([runs_of("symmetric", SYMMETRIC), runs_of("decoder-heavy", {"c": ("16", "16-32")})])
    table = long_table(runs, {"twonn_completion_offset": [0] * 6, "encoder_share": [0.8, 0.82, 0.81] * 2})
    summary = findings.summarize_groups(table, n_boot=0)
    verdicts = findings.verdicts(summary)
    assert (verdicts["verdict"] == "yes").all()
    # the CSV reads the flags back as text, with empty cells where a check does not apply
    controls = pd.read_csv(__import__("io").StringIO(controls_table().to_csv(index=False)))
    failed = findings.apply_controls(verdicts, runs, controls)
    assert (failed["verdict"] == "undecided").all()
    assert (failed["undecided_reason"] == "controls failed: pca_reference").all()
    assert failed["sentence"].str.startswith("Undecided (controls failed: pca_reference): ").all()
    assert (failed["rule_verdict"] == "yes").all()  # what the rules alone say stays in the table
    # the front page keeps its table short: which controls failed is said once, below it
    page = findings.front_page_rst(failed, "Intro\n=====\n")
    assert page.count("pca_reference") == 1 and "controls failed in d AE (pca_reference)" in page
    from docutils.core import publish_parts
    from jinja2 import Environment

    html = publish_parts(Environment().from_string(page).render(), writer="html")["html_body"]
    assert "undecided*" in html and "system-message" not in html
    text = findings.markdown(summary, failed, {}, 0.1, 0.66, controls=controls)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Controls"
    controls_section = text.split("## Controls")[1].split("\n## ")[0]
    assert "2 of 3 applicable control checks passed (1 more did not apply)" in controls_section
    assert "value 0.235 against threshold 0.200" in controls_section  # three significant figures
    # where the check compares a ratio (MSE / PCA's, the -ELBO's excess), the line names the ratio, not the value
    with_ratio = controls.assign(reference=[43.0, 43.0, np.nan, np.nan], ratio=[0.02468, 0.01, np.nan, np.nan])
    text = findings.markdown(summary, failed, {}, 0.1, 0.66, controls=with_ratio)
    assert "ratio 0.0247 against threshold 0.200 (value 0.235, reference 43)" in text
    assert "value 0.235 against" not in text
    # a failure at another training budget, or one that does not apply, leaves the verdicts alone
    elsewhere = findings.apply_controls(verdicts, runs, controls_table(budget_epochs=80))
    assert (elsewhere["verdict"] == "yes").all() and (elsewhere["undecided_reason"] == "").all()
    not_applicable = findings.apply_controls(verdicts, runs, controls_table(applies=False))
    assert (not_applicable["verdict"] == "yes").all()
    # a control speaks for the same data set and model kind only (where controls.csv names them)
    for scope in ({"dataset": "other"}, {"kind": "vae"}):
        other = findings.apply_controls(verdicts, runs, controls_table(**scope))
        assert (other["verdict"] == "yes").all(), scope
    same = findings.apply_controls(verdicts, runs, controls_table(dataset="d", kind="ae"))
    assert (same["verdict"] == "undecided").all()
    passed = findings.markdown(summary, elsewhere, {}, 0.1, 0.66, controls=controls_table(passed=True))
    assert (
        "3 of 3 applicable control checks passed (1 more did not apply)." in passed and "Controls failed" not in passed
    )


def failed_verdicts() -> pd.DataFrame:
    """Verdicts of two data sets, kinds and families, three scopes with failed controls: two families of d AE
    (the same checks), d VAE (another set), e AE (one check); e VAE passed."""
    reasons = {
        ("d", "ae"): "controls failed: a_check, b_check",
        ("d", "vae"): "controls failed: b_check, c_check",
        ("e", "ae"): "controls failed: a_check",
        ("e", "vae"): "",
    }
    rows = []
    for (dataset, kind), reason in reasons.items():
        for family in ("symmetric", "encoder-heavy"):
            verdict = "undecided" if reason else "yes"
            rows.append({"dataset": dataset, "kind": kind, "family": family, "verdict": verdict})
            rows[-1] |= {"undecided_reason": reason, "fragile": False}
    return pd.DataFrame(rows)


def test_the_front_page_names_each_failed_scope_once_with_its_checks_and_is_shorter_than_before():
    verdicts = failed_verdicts()
    assert findings.failed_scopes(verdicts) == {
        "d AE": ["a_check", "b_check"], "d VAE": ["b_check", "c_check"], "e AE": ["a_check"],
    }  # fmt: skip
    page = findings.front_page_rst(verdicts, "Intro\n=====\n")
    footnote = next(line for line in page.splitlines() if line.startswith("\\*"))
    assert footnote.startswith(
        "\\* controls failed in d AE (a_check, b_check), d VAE (b_check, c_check), e AE (a_check). "
    )
    assert footnote.count("controls failed") == 1 and "e VAE" not in footnote
    for scope in ("d AE", "d VAE", "e AE"):
        assert footnote.count(f"{scope} (") == 1, scope
    # shorter than the footnote it replaces, which said "controls failed: ..." once per distinct list of checks
    reasons = list(dict.fromkeys(r for r in verdicts["undecided_reason"] if r))
    before = f"\\* {'; '.join(reasons)}: verdicts at this training budget are undecided. "
    assert len(footnote.split(". ")[0]) + 2 < len(before)
    # scopes whose checks are the same share them
    assert findings.failed_scopes_text({"x AE": ["a"], "y VAE": ["b"], "z AE": ["a"]}) == (
        "controls failed in x AE and z AE (a), y VAE (b)"
    )
    # a verdict that failed no control has no footnote
    assert "controls failed" not in findings.front_page_rst(verdicts[verdicts["dataset"] == "e"].iloc[2:], "I\n=\n")


def test_the_front_page_shows_rule_r3_beside_each_verdict():
    from docutils.core import publish_parts
    from jinja2 import Environment

    swap = {"symmetric": "interchangeable", "encoder-heavy": "not interchangeable", "linear": "undecided"}
    verdicts = pd.DataFrame(
        [{"dataset": "d", "kind": "ae", "family": f, "verdict": "no", "swap": o} for f, o in swap.items()]
        + [{"dataset": "d", "kind": "vae", "family": "symmetric", "verdict": "yes", "swap": "no data"}]
    )
    page = findings.front_page_rst(verdicts, "Intro\n=====\n")
    html = publish_parts(Environment().from_string(page).render(), writer="html")["html_body"]
    assert "system-message" not in html
    cells = re.findall(r"<t[dh][^>]*>(?:<p>)?(.*?)(?:</p>)?</t[dh]>", html)
    # one column beside the verdicts: a mark per family, in the columns' order (the pane has no room for more)
    assert cells[:6] == ["data set", "model", "symmetric", "encoder-heavy", "linear", "R3"]
    assert cells[6:] == ["d", "AE", "no", "no", "no", "✓✗?", "d", "VAE", "yes", "n/a", "n/a", "–––"]
    assert "<strong>R3</strong>, per family: do its encoders serve" in html
    # without R3's column in the verdict table, no R3 column
    assert "R3" not in findings.front_page_rst(verdicts.drop(columns="swap"), "Intro\n=====\n")


def test_the_verdict_figure_reads_r3_from_the_verdict_table():
    from aedissect.analysis import plotting_paper

    verdicts = pd.DataFrame(
        [
            {"dataset": "d", "kind": "ae", "family": "symmetric", "swap": "interchangeable"}
            | {"swap_mean": 0.1, "swap_ci95_low": 0.05, "swap_ci95_high": 0.15, "swap_n": 3}
            | {"swap_control_mean": 0.02, "swap_control_ci95_low": 0.0, "swap_control_ci95_high": 0.04}
            | {"swap_control_n": 3},
            {"dataset": "d", "kind": "ae", "family": "linear", "swap": "no data"}
            | {"swap_mean": np.nan, "swap_ci95_low": np.nan, "swap_ci95_high": np.nan, "swap_n": 0}
            | {"swap_control_mean": 0.3, "swap_control_ci95_low": np.nan, "swap_control_ci95_high": np.nan}
            | {"swap_control_n": 1},
        ]
    )
    points = plotting_paper.swap_points(verdicts)
    assert list(points.columns) == plotting_paper.SWAP_POINT_COLUMNS
    got = points[["family", "pair", "mean", "ci95_low", "ci95_high", "n"]].to_numpy().tolist()
    assert got[:2] == [["symmetric", "arch", 0.1, 0.05, 0.15, 3.0], ["symmetric", "seed", 0.02, 0.0, 0.04, 3.0]]
    assert got[2][:3] == ["linear", "seed", 0.3] and len(got) == 3  # no cross-architecture mean: no point
    assert plotting_paper.swap_points(None).empty and plotting_paper.swap_points(verdicts[["dataset"]]).empty
    per_run = pd.DataFrame(
        {"dataset": "d", "kind": "ae", "family": "symmetric", "seed": [0, 1, 2], "quantity": "encoder_share"}
        | {"value": [0.4, 0.5, 0.6]}
    )
    import matplotlib.pyplot as plt

    with_r3 = plotting_paper.verdict_summary(per_run, verdicts=verdicts)
    labels = [ax.get_xlabel() for ax in with_r3.axes if ax.get_xlabel()]
    assert labels[-1] == plotting_paper.R3_PANEL[1] and len(labels) == 2
    r3 = [ax for ax in with_r3.axes if ax.get_xlabel() == plotting_paper.R3_PANEL[1]][0]
    assert findings.SWAP_THRESHOLD in [line.get_xdata()[0] for line in r3.get_lines()]
    without = plotting_paper.verdict_summary(per_run)
    assert len([ax for ax in without.axes if ax.get_xlabel()]) == 1
    plt.close("all")


def test_r1_is_fixed_by_construction_for_an_architecture_with_an_empty_side():
    assert findings.hidden_layers("none") == [] and findings.hidden_layers("24-32-48") == ["24", "32", "48"]
    assert findings.hidden_layers("[48, 32]") == ["48", "32"] and findings.hidden_layers(np.nan) == []
    assert findings.hidden_layers("c32k4s2-c64k4s2-256") == ["c32k4s2", "c64k4s2", "256"]
    assert findings.fixed_reason("c32k4s2", "none") == findings.NO_DECODER
    assert findings.fixed_reason("48-32-24", "none") == "no hidden decoder layer"
    assert findings.fixed_reason("none", "24-32-48") == "no hidden encoder layer"
    assert findings.fixed_reason("48-32-24", "24") == ""
    # a mixed family: enc-heavy (no hidden decoder layer) cannot complete compression after the bottleneck; the
    # matched architecture decides alone, and it completes compression after the bottleneck
    mixed = runs_of("encoder-heavy", {"enc-heavy": ("48-32-24", "none"), "enc-heavy-matched": ("48-32-24", "24")})
    only = runs_of("decoder-heavy", {"dec-heavy": ("none", "24-32-48")})
    table = pd.concat(
        [
            long_table(mixed, {"twonn_completion_offset": [-1, -1, 0, 1, 1, 1], "encoder_share": [0.3] * 6}),
            long_table(only, {"twonn_completion_offset": [0, 0, 0], "encoder_share": [0.6, 0.7, 0.8]}),
        ],
        ignore_index=True,
    )
    summary = findings.summarize_groups(table, n_boot=0)
    verdicts = findings.verdicts(summary).set_index("family")
    heavy = verdicts.loc["encoder-heavy"]
    assert (heavy["compression"], heavy["compression_k"], heavy["compression_n"]) == ("decoder", 0, 3)
    assert heavy["fixed_archs"] == "enc-heavy (no hidden decoder layer)" and not heavy["fixed_by_construction"]
    assert "not counted, as fixed by construction: enc-heavy" in heavy["sentence"]
    decoder = verdicts.loc["decoder-heavy"]
    assert decoder["compression"] == decoder["verdict"] == findings.FIXED and decoder["fixed_by_construction"]
    text = findings.markdown(summary, verdicts.reset_index(), {}, 0.1, 0.66)
    fixed_section = text.split("## Fixed by construction: no verdict")[1].split("\n## ")[0]
    assert "**d, AE, decoder-heavy**" in fixed_section and "encoder-heavy" not in fixed_section
    assert "- R1 outcome fixed by construction: yes, for every architecture (dec-heavy (no hidden encoder" in text
    assert "- R1 outcome fixed by construction: for enc-heavy (no hidden decoder layer), left out of R1" in text


def test_compression_completes_within_two_standard_errors_when_the_profile_has_them():
    assert compression.completion_cut([1, 2, 3], [9.0, 5.6, 5.0], 0.1) == (3, 3)
    # 5.6 - 5.0 = 0.6 < 2 sqrt(0.3^2 + 0.3^2) = 0.85: within two standard errors, though not within 10%
    assert compression.completion_cut([1, 2, 3], [9.0, 5.6, 5.0], 0.1, se=[0.3, 0.3, 0.3]) == (2, 3)
    assert compression.completion_cut([1, 2, 3], [9.0, 5.6, 5.0], 0.1, se=[0.1, 0.1, 0.1]) == (3, 3)
    # an SE missing at the minimum: the tolerance
    assert compression.completion_cut([1, 2, 3], [9.0, 5.6, 5.0], 0.1, se=[0.3, 0.3, np.nan]) == (3, 3)
    run = "d/ae/sym/z3/relu/s0"
    table = pd.concat(
        [
            profile(run, [60, 9, 5.6, 5.0, 60], 2, metric="twonn_mle"),
            profile(run, [0, 0.3, 0.3, 0.3, 0], 2, metric="twonn_mle_se"),
            profile(run, [60, 9, 9, 1.0, 60], 2, metric="twonn"),  # the regression estimate: not used
        ]
    )
    init = table.assign(state="init", value=table["value"][::-1].to_numpy())  # the untrained network: not used
    table = pd.concat([table.assign(state="trained"), init])
    assert compression.completion_rule(table) == "se"
    offsets = findings.compression_offsets(table, 0.1).set_index("quantity")["value"]
    assert offsets["twonn_completion_offset"] == 0 and offsets["twonn_min_offset"] == 1
    without = findings.compression_offsets(table, 0.1, use_se=False).set_index("quantity")["value"]
    assert without["twonn_completion_offset"] == 1
    # a profile without the MLE keeps the tolerance rule on the regression estimate
    plain = profile(run, [60, 9, 5.4, 5.0, 60], 2)
    assert compression.completion_rule(plain) == "tolerance"
    assert findings.compression_offsets(plain, 0.1).set_index("quantity")["value"]["twonn_completion_offset"] == 0
    assert "within 2 combined standard errors" in findings.rules_text(0.1, 0.66, "se")


def share_rows(run_ids, value, **columns):
    return pd.DataFrame({"run_id": run_ids, "metric": "test_loss", "value": value} | columns)


def test_r2_reads_the_shapley_share_where_the_table_has_it():
    runs = runs_of("symmetric", SYMMETRIC)
    ids = runs["run_id"].tolist()
    old = pd.concat(
        [share_rows(ids, [0.3, 0.32, 0.31], output_bias="trained"), share_rows(ids, 0.1, output_bias="frozen")]
    )
    new = pd.concat(
        [
            old.assign(method="leave_one_out", design="textbook"),
            share_rows(ids, 0.9, output_bias="trained", method="leave_one_out", design="symmetric"),
            share_rows(ids, [0.8, 0.82, 0.81], output_bias="trained", method="shapley", design="symmetric"),
            share_rows(ids, 0.2, output_bias="trained", method="shapley", design="textbook"),
            share_rows(ids, 0.5, output_bias="trained", method="shapley", design="symmetric").assign(metric="test_mse"),
        ]
    )
    for table, shapley in ((old, False), (new, True)):
        shares = findings.encoder_shares(table)
        by = shares.groupby("quantity")["value"].mean()
        assert by["encoder_share"] == pytest.approx(0.31) and by["encoder_share_frozen_output_bias"] == pytest.approx(
            0.1
        )
        # with the Shapley share, per run: the share and whether the run was left out of it or could not be checked
        assert len(shares) == (6 + 3 * 3 if shapley else 6)
        summary = findings.summarize_groups(findings.quantities(runs, [shares]), n_boot=0)
        result = findings.verdict(summary)
        if shapley:
            assert by["encoder_share_shapley"] == pytest.approx(0.81)
            assert (result["work"], result["work_quantity"]) == ("encoder", "encoder_share_shapley")
            assert "Shapley share of the work is 0.810" in result["sentence"]
            assert "its leave-one-out share 0.310" in result["sentence"]
        else:
            assert (result["work"], result["work_quantity"]) == ("decoder", "encoder_share")


def test_r2_leaves_out_runs_whose_frozen_variants_did_not_converge_and_says_how_many():
    runs = runs_of("symmetric", {"sym": ("16", "16"), "wide": ("32", "32")})
    ids = runs["run_id"].tolist()  # sym s0..s2, wide s0..s2
    values = [0.62, 0.64, 0.63, 0.61, 0.65, 0.05]  # wide s2: its frozen encoder stopped far from its optimum
    converged = [True, "", True, True, True, False]  # "": no closed form for that run's variants, kept
    shapley = share_rows(ids, values, output_bias=np.nan, method="shapley", design="symmetric")
    loo = share_rows(ids, 0.3, output_bias="trained", method="leave_one_out", design="textbook")

    def verdict_of(table):
        per_run = findings.quantities(runs, [findings.encoder_shares(table)])
        return findings.verdict(findings.summarize_groups(per_run, n_boot=0)), per_run

    everything, _ = verdict_of(pd.concat([loo, shapley]))  # a table without `converged`: every run counts
    assert everything["work_excluded"] == 0 and everything["work_unchecked"] == 6
    result, per_run = verdict_of(pd.concat([loo, shapley.assign(converged=converged)]))
    shares = per_run[per_run["quantity"] == "encoder_share_shapley"].set_index("run_id")["value"]
    assert np.isnan(shares[ids[5]]) and shares.notna().sum() == 5
    # the unconverged run moved the share (seed 2's mean: (0.63 + 0.05) / 2) and the verdict; without it R2 is encoder
    assert everything["share_mean"] == pytest.approx(np.mean([0.615, 0.645, 0.34]))
    assert result["share_mean"] == pytest.approx(np.mean([0.615, 0.645, 0.63]))
    assert (everything["work"], result["work"]) == ("even", "encoder")
    assert (result["work_runs"], result["work_excluded"], result["work_unchecked"]) == (6, 1, 1)
    assert "1 of 6 models left out of it because a frozen variant did not come within 2%" in result["sentence"]
    assert "1 of 6 could not be checked (no closed form) and count" in result["sentence"]
    assert "its leave-one-out share all seeds: 0.300" in result["sentence"]  # reported beside it, every run
    assert result["work_reason"] == ""
    # too few left: one seed per architecture converged -> no data, and why
    few = shapley.assign(converged=[True, False, False, True, False, False])
    result, _ = verdict_of(pd.concat([loo, few]))
    assert result["work"] == "no data" and result["work_quantity"] == "encoder_share_shapley"
    reason = "fewer than 2 seeds with a Shapley share (4 of 6 models left out: a frozen variant did not converge)"
    assert result["work_reason"] == reason
    assert "4 of 6 models left out of it because" in result["sentence"]
    assert "R2 has no data: fewer than 2 seeds with a Shapley share;" in result["sentence"]
    table = findings.verdicts(findings.summarize_groups(findings.quantities(runs, [findings.encoder_shares(few)])))
    assert table.loc[0, "work_excluded"] == 4 and "R2 has no data" in table.loc[0, "sentence"]


def shares_by_fraction(value_of, kind="ae", archs=None):
    """encoder_share.csv's Shapley rows by hand: ``value_of(arch, fraction, seed)`` for five seeds of each
    architecture (encoder parameter fraction)."""
    archs = archs or {"dec-heavy": 0.1, "dec-heavy-matched": 0.24, "sym": 0.5, "enc-heavy-matched": 0.76, "enc": 0.9}
    rows = []
    for arch, f in archs.items():
        for seed in range(5):
            rows.append(
                {"run_id": f"d/{kind}/{arch}/s{seed}", "dataset": "d", "kind": kind, "arch": arch, "seed": seed}
                | {"metric": "test_loss", "method": "shapley", "design": "symmetric", "output_bias": np.nan}
                | {"value": value_of(arch, f, seed), "param_fraction_encoder": f, "converged": True}
                | {"params_encoder": 7000 * f, "params_decoder": 7000 * (1 - f)}
            )
    return pd.DataFrame(rows)


def test_findings_say_whether_encoder_heavy_and_more_encoder_parameters_can_be_told_apart():
    from aedissect.analysis.intervention_tables import share_vs_parameters

    noise = [-0.02, -0.01, 0.0, 0.01, 0.02]

    def paragraph(value_of, **kwargs):
        lines = findings.parameters_markdown(share_vs_parameters(shares_by_fraction(value_of, **kwargs), n_boot=300))
        assert lines[0] == "## Encoder-heavy, or more encoder parameters?"
        return lines[2]

    # the share follows the parameter fraction, and the matched pair differs by what the line predicts
    follows = paragraph(lambda arch, f, seed: 0.1 + 0.6 * f + noise[seed])
    assert follows.startswith("**d, AE**: across 5 architectures (25 models; the encoder's share of the parameters")
    assert "changes by 0.600 [95% CI" in follows and "at a fraction of 0.5 the line gives 0.400" in follows
    matched = "enc-heavy-matched 0.556 [95% CI 0.536, 0.576] (7000 parameters, a fraction of 0.760 in the encoder)"
    assert matched in follows
    assert follows.endswith(
        "In short, they cannot be told apart: the share follows where the parameters sit, and at matched parameter "
        "counts the two differ by what their parameter fractions predict."
    )

    # the encoder-heavy matched network does far more than its parameters predict: the shape matters, once enough
    # other architectures pin the line down (with five, the outlier widens the prediction's own interval over it)
    def shaped(arch, f, seed):
        return 0.1 + 0.6 * f + noise[seed] + (0.3 if arch == "enc-heavy-matched" else 0)

    few = paragraph(shaped)
    assert "In short, they cannot be told apart" in few
    many = {"a": 0.05, "dec-heavy": 0.1, "b": 0.2, "dec-heavy-matched": 0.24, "c": 0.35, "sym": 0.5, "d": 0.65}
    many |= {"enc-heavy-matched": 0.76, "e": 0.85, "enc": 0.9}
    shape = paragraph(shaped, archs=many)
    assert "In short, they can be told apart: at matched parameter counts the two differ by an amount" in shape
    # a flat share: nothing moves it
    flat = paragraph(lambda arch, f, seed: 0.45 + noise[seed])
    assert "In short, neither the parameter fraction nor the family moves the share measurably" in flat
    # no matched pair in the study
    alone = paragraph(lambda arch, f, seed: 0.1 + 0.6 * f + noise[seed], archs={"a": 0.1, "b": 0.5, "c": 0.9})
    assert "the share follows the encoder's share of the parameters; the study has no pair" in alone
    # two architectures: the line is their difference, and a bootstrap over two architectures says nothing
    two = paragraph(lambda arch, f, seed: 0.1 + 0.6 * f + noise[seed], archs={"a": 0.1, "c": 0.9})
    assert "In short, with 2 architectures the line is the difference between them: too few" in two
    # findings.md has the section before the rules, and the rules in plain words, one sentence each
    summary = findings.summarize_groups(per_run_table({0: [-1, -1], 1: [-1, 0], 2: [0, 0]}), n_boot=0)
    table = share_vs_parameters(shares_by_fraction(lambda arch, f, seed: 0.1 + 0.6 * f + noise[seed]), n_boot=50)
    text = findings.markdown(summary, findings.verdicts(summary), {}, 0.1, 0.66, parameters=table)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[-3:] == [
        "## Encoder-heavy, or more encoder parameters?",
        "## The rules in plain words",
        "## How the verdicts are chosen",
    ]
    plain = text.split("## The rules in plain words")[1].split("## How the verdicts are chosen")[0].strip().splitlines()
    assert [line.split("**")[1] for line in plain] == list(findings.PLAIN_RULES)
    for rule, sentence in findings.PLAIN_RULES.items():
        assert f"- **{rule}**: {sentence}" in plain
        assert sentence.count(". ") == 0 and sentence.endswith(".")  # one sentence
    assert "converged" in findings.PLAIN_RULES["R2 (work)"] or "not finished" in findings.PLAIN_RULES["R2 (work)"]
    assert "within 2% of the closed-form optimum" in text  # R2's exact rule names the tolerance
    assert findings.parameters_markdown(None) == []


# ---------------------------------------------------------------- tables and figure numbering


def test_markdown_and_latex_tables_keep_every_row_and_escape_special_characters():
    table = pd.DataFrame({"arch_name": ["a_b", "c|d"], "share %": [0.5, np.nan], "n": [3, 4]})
    md = paper.to_markdown(table).splitlines()
    assert len(md) == 2 + len(table) and md[0].count("|") == len(table.columns) + 1
    assert "c\\|d" in md[3] and "–" in md[3]
    tex = paper.to_latex(table, "x & y", "tab:x")
    assert r"a\_b" in tex and r"share \%" in tex and r"x \& y" in tex
    assert tex.count(r"\\") == 1 + len(table)  # header + rows
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1


def test_figures_are_numbered_in_paper_order_without_gaps():
    everything = paper_outline.numbered(lambda rule: True)
    assert [n for n, _ in everything] == list(range(1, len(paper_outline.FIGURES) + 1))
    without = paper_outline.numbered(lambda rule: rule != "truncation_tables")
    assert [n for n, _ in without] == list(range(1, len(without) + 1))
    assert [f.name for _, f in without] == [f.name for f in paper_outline.FIGURES if f.producer != "truncation_tables"]
    for _, fig in everything:
        assert (REPO / "workflow/report" / fig.caption).exists(), fig.caption


def test_style_has_one_distinct_colour_per_family_and_one_bottleneck_line():
    import matplotlib.pyplot as plt

    from aedissect.config import FAMILIES

    assert set(style.FAMILY_COLOURS) == set(FAMILIES)
    assert len(set(style.FAMILY_COLOURS.values())) == len(FAMILIES)
    fig, ax = plt.subplots()
    style.mark_bottleneck(ax, 2.0)
    (line,) = ax.get_lines()
    assert line.get_xdata()[0] == 2.0 and line.get_linestyle() == "--"
    handle = style.bottleneck_handle()
    assert handle.get_linestyle() == line.get_linestyle() and handle.get_color() == line.get_color()
    plt.close(fig)


# ---------------------------------------------------------------- paper-scale studies


def documented_job_counts() -> dict[str, dict[str, int]]:
    """docs/paper.md's table of jobs per study: study -> column -> number."""
    section = PAPER_DOC
    lines = [line for line in section.splitlines() if line.startswith("| `studies/")]
    header = next(line for line in section.splitlines() if line.startswith("| study |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    out = {}
    for line in lines:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        out[cells[0]] = {col: int(val) for col, val in zip(columns[1:], cells[1:], strict=True)}
    return out


@pytest.mark.parametrize("study", STUDIES)
def test_study_is_the_full_grid(study):
    config = validate(load_yaml(REPO / "studies" / f"{study}.yaml"), SCHEMA)
    families = {arch["family"] for arch in config["architectures"].values()}
    assert families == {"symmetric", "encoder-heavy", "decoder-heavy"}
    assert set(config["model_kinds"]) == {"ae", "vae"}
    assert len(config["bottlenecks"]) >= 3 and len(config["seeds"]) == 5
    assert config["training"]["device"] == "auto"
    assert all(v is None for v in config["interventions"]["cells"].values())
    assert all(v is None for v in config["truncation"]["select"].values())


@pytest.mark.parametrize("study", OFFLINE_STUDIES)
def test_offline_study_runs_every_experiment_on_its_own_data_set(study):
    config = validate(load_yaml(REPO / "studies" / f"{study}.yaml"), SCHEMA)
    assert config["datasets"] == [study]
    families = {arch["family"] for arch in config["architectures"].values()}
    default = validate(load_yaml(REPO / "config.yaml"), SCHEMA)
    assert families == {arch["family"] for arch in default["architectures"].values()}  # the linear one included
    assert config["training"]["init"] == default["training"]["init"]
    assert config["training"]["lr_schedule"] == default["training"]["lr_schedule"]
    assert set(config["model_kinds"]) == {"ae", "vae"}
    assert len(config["bottlenecks"]) >= 2 and len(config["seeds"]) >= 5
    assert config["interventions"]["cells"]["bottlenecks"] == [max(config["bottlenecks"])]
    assert all(v is None for v in config["truncation"]["select"].values())


@pytest.mark.parametrize("study", STUDIES + OFFLINE_STUDIES)
def test_study_dry_run_matches_the_job_counts_in_the_docs(study, tmp_path):
    stated = documented_job_counts()[f"studies/{study}.yaml"]
    proc = snakemake(tmp_path, "-n", "paper", configfile=REPO / "studies" / f"{study}.yaml", timeout=300)
    table = (proc.stdout + proc.stderr).split("Job stats:")[1].split("\n\n")[0]
    jobs = dict(line.split() for line in table.splitlines()[3:])
    config = load_yaml(REPO / "studies" / f"{study}.yaml")
    models = 1
    for key in ("datasets", "model_kinds", "architectures", "bottlenecks", "activations", "seeds"):
        models *= len(config[key])
    assert stated["models"] == models
    assert int(jobs["total"]) == stated["jobs"]
    for rule in ("train", "freeze", "truncate", "criticality", "stitching"):
        assert int(jobs[rule]) == stated[rule], rule


# ---------------------------------------------------------------- the paper target on the tiny study


def documented_paper_files() -> list[str]:
    """Every results/paper/ file docs/outputs.md names in its results/paper/ section, braces expanded."""
    section = OUTPUTS_DOC.split("\n## The paper: `results/paper/`")[1].split("\n## ")[0]
    names = []
    for stem, exts in re.findall(r"`((?:fig|table)\d+_[a-z_]+)\.\{([a-z,]+)\}`", section):
        names += [f"{stem}.{ext}" for ext in exts.split(",")]
    names += re.findall(r"`((?:findings|verdict)[a-z_]*\.(?:md|csv|html))`", section)
    return names


def test_every_figure_and_table_the_docs_name_is_built_by_the_paper_target(tiny_study):
    names = documented_paper_files()
    assert len([n for n in names if n.endswith(".png")]) == len(paper_outline.FIGURES)
    assert len([n for n in names if n.endswith(".tex")]) == len(paper_outline.TABLES)
    planned = snakemake(tiny_study, "-n", "--forceall", "paper").stdout
    for name in names:
        path = tiny_study / "results/paper" / name
        assert path.exists() and path.stat().st_size > 0, name
        assert f"results/paper/{name}" in planned, f"{name} is not an output of the paper target"


def test_each_figure_sits_next_to_the_table_it_was_drawn_from(tiny_study):
    for number, fig in paper_outline.numbered(lambda rule: True):
        stem = tiny_study / "results/paper" / paper_outline.figure_stem(number, fig)
        assert stem.with_suffix(".csv").read_bytes() == (tiny_study / fig.table).read_bytes(), fig.name
        assert stem.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
        assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_findings_are_computed_from_the_tables(tiny_study):
    out = tiny_study / "results/paper"
    summary = pd.read_csv(out / "findings.csv")
    per_run = pd.read_csv(out / "findings_runs.csv")
    verdicts = pd.read_csv(out / "verdicts.csv")
    text = (out / "findings.md").read_text()
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    # every data set x kind x family has a verdict sentence in findings.md
    groups = runs[["dataset", "kind", "family"]].drop_duplicates()
    assert len(verdicts) == len(groups)
    for sentence in verdicts["sentence"]:
        assert sentence in text
    # the offsets, recomputed here from the truncation table by hand: per run and metric, over the hidden cuts of the
    # trained network, the cut of the minimum and the first cut close to it, each minus the bottleneck cut; close:
    # for TwoNN within 2 combined SEs of the MLE where the profile has them, else (and for PR) within 10%
    profiles = pd.read_csv(tiny_study / "results/tables/layer_profiles.csv")
    if "state" in profiles:
        profiles = profiles[profiles["state"] == "trained"]
    mle = "twonn_mle_se" in set(profiles["metric"])
    checked = 0
    for (run_id, metric), rows in profiles.groupby(["run_id", "metric"]):
        kind = {"twonn_mle" if mle else "twonn": "twonn", "participation_ratio": "pr"}.get(metric)
        if kind is None:
            continue
        bottleneck = rows.loc[rows["side"] == "bottleneck", "cut"].iloc[0]
        hidden = rows[(rows["cut"] > 0) & (rows["cut"] < rows["cut"].max())].groupby("cut")["value"].mean().dropna()
        lowest = hidden.min()
        close = hidden <= lowest + 0.1 * abs(lowest)
        if kind == "twonn" and mle:
            se = profiles[(profiles["run_id"] == run_id) & (profiles["metric"] == "twonn_mle_se")]
            se = se.groupby("cut")["value"].mean().reindex(hidden.index)
            close = hidden <= lowest + 2 * np.sqrt(se**2 + se[hidden.idxmin()] ** 2)
        expected = {
            f"{kind}_min_offset": hidden.idxmin() - bottleneck,
            f"{kind}_completion_offset": hidden[close].index.min() - bottleneck,
        }
        for quantity, value in expected.items():
            got = per_run[(per_run["run_id"] == run_id) & (per_run["quantity"] == quantity)]["value"]
            assert got.tolist() == [value], (run_id, quantity)
            checked += 1
    assert checked == 4 * len(runs)
    # n is the number of seeds, and the CI brackets the mean
    seeds = runs["seed"].nunique()
    assert (summary["n"] <= seeds).all()
    finite = summary.dropna(subset=["ci95_low"])
    assert (finite["ci95_low"] <= finite["mean"] + 1e-12).all() and (
        finite["mean"] <= finite["ci95_high"] + 1e-12
    ).all()
    # the encoder share agrees with the interventions issue's own table
    table = pd.read_csv(tiny_study / "results/tables/encoder_share.csv")
    if "method" in table:
        table = table[(table["method"] == "leave_one_out") & (table["design"] == "textbook")]
    for quantity, bias in (("encoder_share", "trained"), ("encoder_share_frozen_output_bias", "frozen")):
        theirs = table[(table["metric"] == "test_loss") & (table["output_bias"] == bias)].set_index("run_id")["value"]
        ours = per_run[per_run["quantity"] == quantity].set_index("run_id")["value"].sort_index()
        assert len(ours) == len(theirs) > 0
        np.testing.assert_allclose(ours, theirs.loc[ours.index], rtol=1e-6)  # CSVs: 10 digits


def test_verdicts_carry_their_statistics_and_their_sensitivity(tiny_study):
    out = tiny_study / "results/paper"
    verdicts = pd.read_csv(out / "verdicts.csv")
    sweep = pd.read_csv(out / "verdict_sensitivity.csv")
    for column in ("compression_p", "share_boot95_low", "offset_boot95_high", "fragile", "fixed_by_construction"):
        assert column in verdicts, column
    assert "undecided_reason" in verdicts and "rule_verdict" in verdicts
    # every group under every setting; fragile exactly where a setting changes the verdict
    assert len(sweep) == len(verdicts) * sweep.groupby(findings.GROUP).size().iloc[0]
    # a variant of a rule that misses a phantom is no alternative: its flips make nothing fragile
    counted = sweep["phantoms"].isna()
    flipped = sweep[~sweep["same_as_baseline"] & counted][findings.GROUP].drop_duplicates()
    fragile = verdicts[verdicts["fragile"]][findings.GROUP]
    assert sorted(map(tuple, flipped.to_numpy())) == sorted(map(tuple, fragile.to_numpy()))
    # the tiny study's encoder-heavy and decoder-heavy architectures each lack a side
    runs = pd.read_csv(tiny_study / "results/tables/runs.csv")
    one_sided = {
        f for f, rows in runs.groupby("family") if (rows["encoder"].eq("none") | rows["decoder"].eq("none")).all()
    }
    assert set(verdicts[verdicts["fixed_by_construction"]]["family"]) == one_sided
    assert (out / "verdict_sensitivity.html").read_text().count("<tr>") == len(verdicts) + 1


def test_report_has_the_verdicts_up_front_and_findings_tables_and_figures_as_items(tiny_study, tiny_report):
    html = tiny_report.read_text()
    verdicts = pd.read_csv(tiny_study / "results/paper/verdicts.csv")
    # the front page: the verdict table; the verdict sentences and rules are in the findings item
    assert "Is the encoder what encodes?" in html and verdicts["family"].iloc[0] in html
    assert "How the verdicts are chosen" in (tiny_study / "results/paper/findings.html").read_text()
    assert "results/paper/findings.html" in html and "results/paper/verdict_sensitivity.html" in html
    for number, name, *_ in paper_outline.tables(lambda rule: True):
        assert f"results/paper/{paper_outline.table_stem(number, name)}.html" in html
    for number, fig in paper_outline.numbered(lambda rule: True):
        assert f"{paper_outline.figure_stem(number, fig)}.png" in html


def test_every_figure_is_drawn_once(tiny_study):
    pngs = sorted((tiny_study / "results").rglob("*.png"))
    contents = {}
    for png in pngs:
        contents.setdefault(png.read_bytes(), []).append(png.relative_to(tiny_study))
    assert len(pngs) > 10 and all(len(paths) == 1 for paths in contents.values()), [
        paths for paths in contents.values() if len(paths) > 1
    ]


def test_front_page_survives_snakemakes_jinja_rendering_and_is_valid_rest():
    from docutils.core import publish_parts
    from jinja2 import Environment

    verdicts = pd.DataFrame(
        {
            "dataset": ["a{{ b }}", "a{{ b }}", "digits"],
            "kind": ["ae", "vae", "ae"],
            "family": ["symmetric", "symmetric", "decoder-heavy"],
            "verdict": ["yes", "no", "partly"],
        }
    )
    page = findings.front_page_rst(verdicts, "Intro\n=====\n\nSome words.\n")
    rendered = Environment(trim_blocks=True, lstrip_blocks=True).from_string(page).render()
    assert "a{{ b }}" in rendered and "raw" not in rendered
    html = publish_parts(rendered, writer="html", settings_overrides={"report_level": 2})["html_body"]
    assert "system-message" not in html
    # rows data set and kind, columns the families in their usual order; a missing family reads n/a
    cells = re.findall(r"<t[dh][^>]*>(?:<p>)?(.*?)(?:</p>)?</t[dh]>", html)
    assert cells == ["data set", "model", "symmetric", "decoder-heavy"] + ["a{{ b }}", "AE", "yes", "n/a"] + [
        "a{{ b }}",
        "VAE",
        "no",
        "n/a",
    ] + ["digits", "AE", "n/a", "partly"]


def test_findings_markdown_becomes_an_html_page():
    text = "# Findings\n\nGenerated by `x`; a < b.\n\n## digits, AE\n\n**sym**: yes.\n\n- one\n  more\n- two\n"
    page = paper.markdown_html(text, "Findings")
    assert "<h1>Findings</h1>" in page and "<h2>digits, AE</h2>" in page
    assert "<p>Generated by <code>x</code>; a &lt; b.</p>" in page and "<p><strong>sym</strong>: yes.</p>" in page
    assert "<ul>\n<li>one more</li>\n<li>two</li>\n</ul>" in page


def test_html_tables_right_align_numbers_and_format_them():
    table = pd.DataFrame({"arch": ["a<b", "c"], "value": [0.0000861, -1.0]})
    page = paper.to_html(table, "A caption.")
    assert "<caption>A caption.</caption>" in page and "<td>a&lt;b</td>" in page
    assert '<td class="number">8.61×10⁻⁵</td>' in page and '<td class="number">−1</td>' in page


def test_a_wide_table_of_words_wraps_its_columns_instead_of_transposing():
    words = pd.DataFrame({f"rule {i}": ["fixed by construction", "not interchangeable"] for i in range(8)})
    tex = paper.to_latex(words, "caption", "tab:words")
    assert tex.count(r"p{0.119\textwidth}") == 8 and "fixed by construction" in tex
    narrow = paper.to_latex(words.iloc[:, :2], "caption", "tab:narrow")
    assert r"\begin{tabular}{ll}" in narrow


def test_the_sweep_scales_every_control_threshold_and_says_what_the_controls_then_leave():
    controls = pd.DataFrame(
        [
            {"check": "mse", "value": 0.0101, "reference": 0.01, "ratio": 1.01, "threshold": 1.02, "passed": True},
            {"check": "elbo", "value": -3.0, "reference": -3.1, "ratio": 0.015, "threshold": 0.02, "passed": True},
            {"check": "angle", "value": 4.0, "reference": 1.5, "ratio": np.nan, "threshold": 5.0, "passed": True},
            {"check": "mse", "value": 0.0103, "reference": 0.01, "ratio": 1.03, "threshold": 1.02, "passed": False},
        ]
    ).assign(applies=True, note=["", "", "", ""], run_id="d/ae/sym/z3/relu/s0", epochs=40, batch_size=64, lr=0.002)
    strict = findings.rescaled_controls(controls, 0.5)
    assert strict["threshold"].tolist() == pytest.approx([1.01, 0.01, 2.5, 1.01])
    assert strict["passed"].tolist() == [True, False, False, False]
    lenient = findings.rescaled_controls(controls, 2.0)
    assert lenient["threshold"].tolist() == pytest.approx([1.04, 0.04, 10.0, 1.04])
    assert lenient["passed"].tolist() == [True, True, True, True]
    # a bug found stays a bug however lenient the threshold
    bug = controls.assign(note=["", "", "", "train MSE / PCA-z train MSE 0.9 < 0.999: impossible ..."])
    assert findings.rescaled_controls(bug, 2.0)["passed"].tolist()[3] is False
    # in the sweep: the controls at their own thresholds fail one check here, so every verdict reads undecided at
    # x1 and at x0.5 (no flip) and yes at x2 (a flip: fragile to the control thresholds)
    runs = runs_of("symmetric", SYMMETRIC)
    per_run = long_table(runs, {"twonn_completion_offset": [0, 0, 0]})
    sweep = findings.sensitivity(per_run, None, controls=controls, runs=runs)
    rows = sweep[sweep["setting"] == "control thresholds"].set_index("value")
    assert rows.loc[0.5, "verdict"] == "undecided" and rows.loc[0.5, "same_as_baseline"]
    assert rows.loc[2.0, "verdict"] == "yes" and not rows.loc[2.0, "same_as_baseline"]
    assert (rows["reference"] == "undecided").all() and (rows["baseline_verdict"] == "yes").all()
