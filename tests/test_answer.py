"""The answer in sentences (aedissect.analysis.answer): every number read from the verdict and phantom tables, the
same paragraph opening findings.md, the report's front page and the README, whose block is the published tables'."""

import numpy as np
import pandas as pd
from scipy import stats

from aedissect.analysis import answer, calibration, findings
from conftest import REPO

VERDICTS = pd.DataFrame(
    {"dataset": "d", "kind": "ae", "family": ["a", "b", "c"], "verdict": ["yes", "yes", "partly"]}
    | {"fragile": [True, False, False], "compression": ["encoder", "encoder", "mixed"]}
    | {"compression_k": [10, 9, 5], "compression_n": [10, 10, 10]}
    | {"abstraction": ["encoder", "no data", "decoder"], "abstraction_k": [8, 0, 1], "abstraction_n": [10, 0, 10]}
    | {"compression_cells_n": [4, 2, 2], "compression_cells_p_holm": [0.03, 1.0, np.nan]}
    | {"share_mean": [0.2, 0.31, np.nan], "share_ci95_low": [0.15, 0.3, np.nan]}
    | {"share_ci95_high": [0.25, 0.32, np.nan]}
)
PHANTOMS = pd.DataFrame(
    {"rule": "work", "dataset": ["d", "d"], "phantom": ["linear-z8", "linear-z8/reparametrised"]}
    | {"expected": "even", "got": "decoder", "value": [0.2391, 0.2391], "match": False, "description": ""}
)
CALIBRATED = {"compression": "", "abstraction": "", "work": "linear-z8 on d: expected even, got decoder"}


def exact_interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson from the Beta quantiles, independently of inference.clopper_pearson."""
    low = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return low, high


def test_the_answer_reads_every_number_from_the_tables():
    first, r1, ra, r2 = answer.sentences(VERDICTS, PHANTOMS, CALIBRATED)
    assert first.startswith("**Is the encoder what encodes? Yes in 2 of 3 groups**")
    assert "`yes` in 2, `partly` in 1" in first and "(R1 compression, RA abstraction); 1 of them fragile" in first
    low, high = exact_interval(24, 30)  # R1 pooled over the three groups: 10 + 9 + 5 of 30 models
    assert f"(R1) in 24 of 30 models (0.800 [95% CI {low:.3f}, {high:.3f}])" in r1
    assert "it says `encoder` in 2, `mixed` in 1 of the 3 groups" in r1
    assert "(2 to 4 per group)" in r1 and "is below 0.05 in 1 of 2 groups" in r1
    low, high = exact_interval(9, 20)  # RA only where it has data
    assert f"(RA) in 9 of 20 models (0.450 [95% CI {low:.3f}, {high:.3f}])" in ra
    assert "from 0.200 [95% CI 0.150, 0.250] (d AE a) to 0.310 [95% CI 0.300, 0.320] (d AE b)" in r2
    assert "R2 is left out of the verdicts" in r2 and "it gives d 0.239, not 0.5" in r2
    out = answer.sentences(VERDICTS, PHANTOMS, CALIBRATED | {"compression": "no phantom checks it"})
    assert "(RA abstraction)" in out[0]
    assert "1 of the 3 groups, but no phantom checks it, so it is left out of the verdicts;" in out[1]
    kept = answer.sentences(VERDICTS, PHANTOMS, CALIBRATED | {"work": ""})
    assert "(R1 compression, RA abstraction, R2 work)" in kept[0] and "left out" not in kept[-1]


def test_findings_md_and_the_front_page_open_with_the_same_paragraph():
    paragraph = answer.markdown(VERDICTS, PHANTOMS, CALIBRATED)
    assert answer.findings_section(VERDICTS, PHANTOMS, CALIBRATED) == ["## The answer", "", paragraph, ""]
    rst = answer.rst(VERDICTS, PHANTOMS, CALIBRATED)
    assert [text.replace("``", "`") for text in rst] == answer.sentences(VERDICTS, PHANTOMS, CALIBRATED)
    page = findings.front_page_rst(VERDICTS.assign(work="no data"), "Title\n=====\n\nThe intro.\n", rst)
    assert "``yes`` in 2, ``partly`` in 1" in rst[0]
    # the answer before the table, each sub-question's number after it, then the intro
    title, first, table, details = (page.index(t) for t in ("Title", rst[0], ".. list-table::", " ".join(rst[1:])))
    assert title < first < table < details < page.index("The intro.")


def test_the_readme_block_is_replaced_and_nothing_else():
    readme = f"# t\n\nbefore\n\n{answer.BEGIN}\nold words\n{answer.END}\n\nafter\n"
    out = answer.with_block(readme, f"{answer.BEGIN}\nnew\n{answer.END}")
    assert out == f"# t\n\nbefore\n\n{answer.BEGIN}\nnew\n{answer.END}\n\nafter\n"
    try:
        answer.with_block("# no block\n", "x")
    except ValueError as err:
        assert "no answer block" in str(err)
    else:
        raise AssertionError("a README without the block must be refused")


def test_the_readme_states_the_published_answer(tmp_path):
    """README.md's answer is what the generator writes from the published tables (docs/results/), to the byte."""
    verdicts, phantoms = answer.read_tables(answer.PUBLISHED)
    block = answer.readme_block(answer.PUBLISHED)
    readme = (REPO / "README.md").read_text()
    assert block in readme
    assert answer.markdown(verdicts, phantoms, calibration.calibrated(phantoms)) in block
    assert answer.main(["--check"]) == 0
    changed = tmp_path / "README.md"
    changed.write_text(readme.replace(" groups**", " groups **", 1))
    assert answer.main(["--check", "--readme", str(changed)]) == 1


def test_the_readme_answer_is_on_its_first_screen_and_the_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    begin = lines.index(answer.BEGIN)
    assert begin < 15 and lines[begin + 1].startswith("**Is the encoder what encodes? ")
