"""Numbers as a person reads them: one style (aedissect.formatting) in findings.md, the paper tables (Markdown and
LaTeX) and train_summary.md; wide LaTeX tables transposed to fit a two-column page."""

import re

import numpy as np
import pandas as pd
import pytest

from aedissect import measured
from aedissect.analysis import aggregate, findings, paper
from aedissect.analysis.stats import mean_ci
from aedissect.formatting import estimate, is_number_cell, number
from conftest import REPO


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.00212, "0.00212"),  # at 1e-3 and above: plain, three significant figures
        (0.00192, "0.00192"),
        (8.6e-05, "8.60×10⁻⁵"),  # below 1e-3: scientific, never "0.00"
        (-6.3e-05, "−6.30×10⁻⁵"),  # never "-0.00"
        (0.277, "0.277"),
        (0.5, "0.500"),  # trailing zeros are significant figures too
        (11.996, "12.0"),
        (123.4, "123"),
        (0.0009996, "0.00100"),  # the choice of notation is made on the rounded value
        (999.6, "1.00×10³"),
        (12345.6, "1.23×10⁴"),  # at 1e3 and above: scientific, never 12300 (digits that were rounded away)
        (1e300, "1.00×10³⁰⁰"),
        (0, "0"),
        (0.0, "0"),
        (-0.0, "0"),
        (-1.0, "−1"),  # a float with an integral value, such as a mean offset
        (3, "3"),
        (12345, "12345"),  # integers are exact: every digit
        (np.int64(-3), "−3"),
        (np.float64(2.5), "2.50"),
        (float("nan"), "–"),
        (float("inf"), "∞"),
        (float("-inf"), "−∞"),
        (True, "True"),  # not a number
        ("enc-heavy", "enc-heavy"),  # text keeps its hyphen
    ],
)
def test_number_has_three_significant_figures_and_real_minus_signs(value, text):
    assert number(value) == text


def summary_row(values) -> dict:
    return mean_ci(values)


def test_estimate_prints_mean_interval_and_n():
    row = {"mean": 0.00212, "std": 1e-4, "n": 3, "ci95_low": 0.00192, "ci95_high": 0.00232}
    assert estimate(row) == "0.00212 [95% CI 0.00192, 0.00232] (n=3)"
    assert estimate(row, ci_label="") == "0.00212 [0.00192, 0.00232] (n=3)"


def test_estimate_of_a_quantity_constant_across_seeds_prints_no_interval():
    assert estimate(summary_row([-1, -1, -1])) == "all seeds: −1 (n=3)"
    assert estimate(summary_row([0.1, 0.1, 0.1])) == "all seeds: 0.100 (n=3)"  # mean 0.1 + rounding: still equal
    assert estimate(summary_row([0, 0])) == "all seeds: 0 (n=2)"
    # seeds that differ beyond rounding keep their interval, even one that prints narrow
    assert estimate(summary_row([0.2771, 0.2772, 0.2773])).startswith("0.277 [95% CI 0.277, 0.277]")


def test_estimate_with_one_seed_or_none():
    assert estimate(summary_row([0.5])) == "0.500 (n=1, no CI)"
    assert estimate(summary_row([])) == "n/a (n=0)"
    assert estimate(summary_row([np.nan, np.nan])) == "n/a (n=0)"


def test_number_cells_are_recognised_for_alignment():
    for cell in ["0.277 [0.2, 0.3] (n=3)", "−1", "-1", "all seeds: −1 (n=3)", "–", "n/a (n=0)", "∞", 3, 2.5]:
        assert is_number_cell(cell), cell
    for cell in ["digits", "enc-heavy", "yes", True, None]:
        assert not is_number_cell(cell), cell


# ---------------------------------------------------------------- where the numbers are printed


def per_run(quantities: dict, groups=(("digits", "ae", "symmetric"),)) -> pd.DataFrame:
    """Per-run quantities: quantity -> per-seed values, the same for every group given."""
    rows = []
    for dataset, kind, family in groups:
        for quantity, values in quantities.items():
            for seed, value in enumerate(values):
                run = f"{dataset}/{kind}/{family}/s{seed}"
                rows.append(
                    {"run_id": run, "dataset": dataset, "kind": kind, "family": family, "seed": seed}
                    | {"quantity": quantity, "value": value}
                )
    return pd.DataFrame(rows)


QUANTITIES = {
    "twonn_completion_offset": [-1, -1, -1],
    "encoder_share": [0.26, 0.28, 0.29],
    "stitch_penalty": [8.6e-05, -6.3e-05, 1.2e-4],
    "test_mse": [0.00192, 0.00212, 0.00232],
}


def test_findings_text_and_table_print_the_same_numbers():
    summary = findings.summarize_groups(per_run(QUANTITIES))
    text = findings.markdown(summary, findings.verdicts(summary), {}, 0.1, 0.66)
    table = paper.findings_table(summary)
    md = paper.to_markdown(table)
    for quantity in QUANTITIES:
        row = summary[summary["quantity"] == quantity].iloc[0].to_dict()
        assert f"{findings.QUANTITY_LABELS[quantity]}: {estimate(row)}" in text
        assert estimate(row, ci_label="") in md  # the same digits in text and table: 0.277 in both, never 0.28
    assert "all seeds: −1 (n=3)" in text and "[-1, -1]" not in text and "[−1, −1]" not in text
    assert "0.277 [95% CI" in text and "0.00212 [95% CI 0.00" in text
    assert not re.search(r"(?<![\d.])-?0\.00(?!\d)", text), "a value printed as 0.00"


def test_train_summary_markdown_uses_the_same_style():
    summary = pd.DataFrame(
        [
            {"dataset": "digits", "kind": "ae", "arch": "sym", "bottleneck": 3, "metric": m, "n_failed": 0} | r
            for m, r in [
                ("test_mse", summary_row([0.00192, 0.00212, 0.00232])),
                ("active_units", summary_row([3, 3, 3])),
                ("psnr", summary_row([21.5])),
            ]
        ]
    )
    lines = aggregate.summary_markdown(summary).splitlines()
    assert lines[1].count("---:") == 5  # z, mean, CI, n, diverged
    assert "| 0.00212 ± 2.00×10⁻⁴ | [0.00162, 0.00262] | 3 | 0 |" in lines[2]
    assert "| 3 ± 0 | all seeds equal | 3 | 0 |" in lines[3]
    assert "| 21.5 ± – | – | 1 | 0 |" in lines[4]


def test_markdown_table_right_aligns_number_columns():
    table = pd.DataFrame({"arch": ["a", "b"], "z": [3, 8], "share": ["0.500 [0.4, 0.6] (n=3)", "–"]})
    assert paper.to_markdown(table).splitlines()[1] == "|---|---:|---:|"


def test_latex_numbers_use_math_minus_signs_and_powers_of_ten():
    assert paper.latex_escape(number(-6.3e-05)) == r"$-$6.30$\times 10^{-5}$"
    assert paper.latex_escape(number(12345.6)) == r"1.23$\times 10^{4}$"
    assert paper.latex_escape(number(float("-inf"))) == r"$-$$\infty$"
    assert paper.latex_escape("enc-heavy_1 & 50%") == r"enc-heavy\_1 \& 50\%"  # a hyphen in text stays
    table = pd.DataFrame({"arch": ["a-b"], "z": [3], "penalty": [-6.3e-05]})
    tex = paper.to_latex(table, "c", "tab:c")
    assert r"\begin{tabular}{lrr}" in tex and r"a-b & 3 & $-$6.30$\times 10^{-5}$ \\" in tex


# \textwidth of a two-column page (7 in) and \tabcolsep, in pt
TEXTWIDTH_PT, TABCOLSEP_PT = 7 * 72.27, 6


def test_wide_findings_table_is_transposed_to_fit_a_two_column_page():
    groups = [(d, k, f) for d in ("digits", "factors") for k in ("ae", "vae") for f in ("sym", "enc", "dec", "wide")]
    quantities = {q: QUANTITIES.get(q, [0.1, 0.2, 0.3]) for q in findings.QUANTITY_LABELS}
    table = paper.findings_table(findings.summarize_groups(per_run(quantities, groups)))
    assert len(table.columns) == 3 + len(findings.QUANTITY_LABELS)  # 12: three pages wide untransposed
    tex = paper.to_latex(table, "caption", "tab:findings")
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}\n", tex).group(1)
    widths = [float(w) for w in re.findall(r"p\{([\d.]+)\\textwidth\}", spec)]
    assert 2 <= len(widths) <= 8 and len(widths) == spec.count("p{")
    assert sum(widths) * TEXTWIDTH_PT + 2 * TABCOLSEP_PT * len(widths) <= TEXTWIDTH_PT
    assert r"\raggedleft" in spec  # numbers right-aligned
    rows = [line for line in tex.splitlines() if line.endswith(r"\\")]
    assert all(row.count(" & ") == len(widths) - 1 for row in rows)
    # every group heads a column once, every quantity labels a row in each block, no cell is lost
    headers = [row for row in rows if row.startswith(r"\textbf{")]
    assert len(headers) == 2 * 2 * 2  # 4 families in blocks of at most 3: two header rows per data set and kind
    assert r"\textbf{digits, ae} & dec & enc & sym \\" in headers  # the table's (sorted) order
    assert r"\textbf{digits, ae} & wide &  &  \\" in headers
    assert len(rows) == len(headers) * (1 + len(findings.QUANTITY_LABELS))
    assert tex.count("all seeds: $-$1 (n=3)") == len(groups)
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 1


def test_narrow_tables_are_not_transposed():
    verdicts = pd.DataFrame(
        {"dataset": ["digits"], "kind": ["ae"], "family": ["symmetric"], "compression": ["encoder"]}
        | {"work": ["even"], "verdict": ["partly"]}
    )
    tex = paper.to_latex(paper.verdict_table(verdicts), "c", "tab:v")
    assert r"\begin{tabular}{llllll}" in tex and "p{" not in tex


# ---------------------------------------------------------------- measured numbers: one source (docs/measured.json)

# a wall time as a person types it: 14 min 49 s, 7 min, 22 hours, 2.3 minutes, 5 h
TYPED_WALL_TIME = re.compile(r"\b\d[\d.,]*(?:[–-]\d[\d.,]*)? ?(?:min(?:utes)?|hours?|h)\b")


def quoting_files() -> list:
    return [REPO / "README.md", REPO / "config.yaml", *sorted((REPO / "studies").glob("*.yaml")), *measured.documents()]


def test_every_quoted_measurement_is_the_measured_one():
    values = measured.load()
    assert values, "docs/measured.json is missing: make bench writes it"
    quotes = 0
    for path in measured.documents():
        text = path.read_text()
        quotes += len(measured.QUOTE.findall(text))
        assert measured.quoted(text, values) == text, f"{path.name}: a quote is not docs/measured.json's value"
    assert quotes >= 10


def test_no_wall_time_is_typed_by_hand():
    """Outside a quote of docs/measured.json, no document states a wall time; benchmark.md's History section holds
    the dated earlier measurements."""
    typed = []
    for path in {*quoting_files()}:
        text = path.read_text()
        if path.name == "benchmark.md":
            text = text[: text.index("## History")]
        for match in TYPED_WALL_TIME.finditer(measured.QUOTE.sub("", text)):
            typed.append(f"{path.name}: {match.group()!r}")
    assert not typed, typed


def test_a_changed_measurement_changes_its_quotes_and_a_stale_quote_fails(tmp_path):
    values = measured.load()
    text = "took <!-- measured:paper_scale_hours -->1 hours<!-- /measured --> here"
    assert measured.quoted(text, values) == (
        f"took <!-- measured:paper_scale_hours -->{number(values['paper_scale_hours']['value'])} hours"
        "<!-- /measured --> here"
    )
    bench = {"provenance": {"git_commit": "abcdef123", "threads": 2, "device": "cpu"}, "unix_time": 0.0}
    fresh = measured.from_bench(bench | {"startup_s": 1.5, "default_study_s": None}, values)
    stamp = {"commit": "abcdef1", "date": "1970-01-01", "threads": 2, "device": "cpu"}
    assert fresh["startup_s"] == {"value": 1.5, **stamp}
    assert fresh.get("default_study_s") == values.get("default_study_s")  # skipped: the earlier one stays
    assert measured.render(fresh, "startup_s") == "1.50 s (commit abcdef1, 1970-01-01)"
    assert measured.duration(889) == "14 min 49 s" and measured.duration(3 * 3600 + 299) == "3 h 05 min"
    assert TYPED_WALL_TIME.search("took 14 min 49 s") and TYPED_WALL_TIME.search("about 22 hours")
    assert not TYPED_WALL_TIME.search("the 4 heads of 3 models")
