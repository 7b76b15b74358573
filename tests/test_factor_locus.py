"""The factor locus in findings.md and results/paper/factor_locus.csv: where the linear factor probe finds the known
factors, per data set, kind and family, from encoding_locus.csv."""

import numpy as np
import pandas as pd
import pytest

from aedissect.analysis import findings, paper
from aedissect.analysis.stats import mean_ci
from aedissect.inference import clopper_pearson

# arch -> (family, encoder, decoder, number of cuts L + 1 with the bottleneck cut), as runs.csv writes them
ARCHS = {
    "sym": ("symmetric", "16", "16", 2),  # cuts 0 input, 1 hidden, 2 bottleneck, 3 hidden, 4 output
    "enc-heavy": ("encoder-heavy", "24-16", "none", 3),  # 0, 1, 2, 3 bottleneck, 4 output
}


def runs_table(datasets=("shapes", "digits"), seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        for arch, (family, encoder, decoder, _) in ARCHS.items():
            for seed in seeds:
                rows.append(
                    {"run_id": f"{dataset}/ae/{arch}/z3/relu/s{seed}", "dataset": dataset, "kind": "ae"}
                    | {"family": family, "arch": arch, "encoder": encoder, "decoder": decoder}
                    | {"bottleneck": 3, "seed": seed}
                )
    return pd.DataFrame(rows)


def locus_table(runs: pd.DataFrame, cuts: dict) -> pd.DataFrame:
    """encoding_locus.csv: ``cuts`` maps (arch, seed) -> (cut of factor_r2_95, cut of factor_r2_max) on shapes;
    digits (no factors) has only a TwoNN locus."""
    rows = []
    for run in runs.to_dict("records"):
        b = ARCHS[run["arch"]][3]
        loci = {"twonn_min": b}
        if run["dataset"] == "shapes":
            loci |= dict(zip(("factor_r2_95", "factor_r2_max"), cuts[(run["arch"], run["seed"])], strict=True))
        for name, cut in loci.items():
            rows.append(
                {"run_id": run["run_id"], "dataset": run["dataset"], "locus": name, "metric": "m", "cut": cut}
                | {"bottleneck_cut": b, "offset": cut - b, "value": 0.9}
            )
    return pd.DataFrame(rows)


CUTS = {
    ("sym", 0): (0, 2),  # 95% reached at the input, maximum at the bottleneck
    ("sym", 1): (1, 3),
    ("sym", 2): (2, 2),
    ("enc-heavy", 0): (1, 3),
    ("enc-heavy", 1): (2, 4),
    ("enc-heavy", 2): (0, 0),
}


def test_factor_locus_averages_each_seed_over_the_family_and_counts_the_models_in_the_encoder():
    runs = runs_table()
    table = findings.factor_locus(locus_table(runs, CUTS), runs, n_boot=0)
    assert list(table.columns) == findings.FACTOR_LOCUS_COLUMNS
    # only the data set with factors, the loci in FACTOR_LOCI order
    assert set(table["dataset"]) == {"shapes"}
    assert table[table["family"] == "symmetric"]["locus"].tolist() == list(findings.FACTOR_LOCI)
    sym = table[(table["family"] == "symmetric") & (table["locus"] == "factor_r2_95")].iloc[0]
    offsets = [0 - 2, 1 - 2, 2 - 2]  # one architecture per family: each seed is its one model
    assert sym["mean"] == pytest.approx(np.mean(offsets))
    assert sym["ci95_low"] == pytest.approx(mean_ci(offsets)["ci95_low"])
    assert (sym["n"], sym["n_runs"], sym["n_encoder"], sym["n_input"]) == (3, 3, 2, 1)
    assert (sym["n_bottleneck"], sym["n_decoder"]) == (1, 0)
    assert sym["share_encoder"] == pytest.approx(2 / 3)
    assert (sym["share_encoder_cp_low"], sym["share_encoder_cp_high"]) == pytest.approx(clopper_pearson(2, 3))
    heavy = table[(table["family"] == "encoder-heavy") & (table["locus"] == "factor_r2_max")].iloc[0]
    # cuts 3, 4, 0 of a bottleneck at 3: at the bottleneck, in the decoder (the output cut), at the input
    assert (heavy["n_encoder"], heavy["n_input"], heavy["n_bottleneck"], heavy["n_decoder"]) == (1, 1, 1, 1)
    assert heavy["one_sided_archs"] == "enc-heavy (no hidden decoder layer)" and not sym["one_sided_archs"]


def test_findings_md_gets_a_factor_locus_section_before_the_rules():
    runs = runs_table()
    locus = locus_table(runs, CUTS)
    table = findings.factor_locus(locus, runs, n_boot=0)
    lines = findings.factor_locus_markdown(table, runs, locus)
    assert lines[0] == findings.FACTOR_LOCUS_HEADING
    section = "\n".join(lines)
    assert "### shapes, AE" in section and "### digits" not in section
    assert "No factor locus on digits (no known factors)." in section
    assert "- **encoder-heavy** (one-sided: enc-heavy (no hidden decoder layer)), 95% of the maximal" in section
    assert "- **symmetric**, 95% of the maximal linear factor R² first reached (`factor_r2_95`): offset −1 [" in section
    assert "- **symmetric**, maximal linear factor R² (`factor_r2_max`): offset " in section
    assert "in the encoder 2 of 3 models (share 0.667, Clopper-Pearson 95% CI [" in section
    assert "1 of them at the input, at the bottleneck 1, in the decoder 0" in section
    text = "# Findings\n\n## shapes, AE\n\nverdicts\n\n## How the verdicts are chosen\n\nrules\n"
    out = findings.with_section(text, lines)
    assert out.index("## shapes, AE") < out.index(findings.FACTOR_LOCUS_HEADING) < out.index("## How the verdicts")
    assert out.replace(section.rstrip("\n") + "\n\n", "") == text
    # no rules heading: the section goes last
    assert findings.with_section("# Findings\n", lines).endswith(section.rstrip("\n") + "\n\n")
    # findings.html: one list item per family and locus
    html = paper.markdown_html(out, "Findings")
    assert html.count("<li><strong>symmetric</strong>, ") == html.count("<li><strong>encoder-heavy</strong>") == 2


def test_without_truncation_or_factors_the_section_says_so():
    runs = runs_table(datasets=("digits",))
    assert findings.factor_locus(None, runs).empty
    assert "the workflow has no `truncation_tables` rule" in "\n".join(findings.factor_locus_markdown(None, runs, None))
    locus = locus_table(runs, CUTS)
    table = findings.factor_locus(locus, runs)
    assert table.empty and list(table.columns) == findings.FACTOR_LOCUS_COLUMNS
    assert "No factor locus on digits (no known factors)." in findings.factor_locus_markdown(table, runs, locus)
    # a data set the truncation did not profile (truncation.select)
    more = pd.concat([runs, runs_table(datasets=("mnist1d",))], ignore_index=True)
    lines = findings.factor_locus_markdown(table, more, locus)
    assert "No factor locus on digits (no known factors), mnist1d (not in truncation.select)." in lines
