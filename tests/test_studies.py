"""One table of verdicts across studies (aedissect.analysis.studies, studies_table; the studies_summary target) and
the README's answer per study from the published one."""

import pandas as pd
import pytest

from aedissect.analysis import answer, studies, studies_table
from conftest import REPO, snakemake
from test_answer import exact_interval


def verdicts(dataset: str, families: list[str], **columns) -> pd.DataFrame:
    """A small verdicts table: what the summary reads, and a provenance column it must keep."""
    n = len(families)
    return pd.DataFrame(
        {"dataset": dataset, "kind": "ae", "family": families, "verdict": ["yes", "partly", "no"][:n]}
        | {"fragile": [True, False, False][:n], "compression": "encoder"}
        | {"compression_k": [10, 7, 2][:n], "compression_n": [10, 10, 10][:n], "abstraction": "no data"}
        | {"abstraction_k": 0, "abstraction_n": 0, "share_mean": [0.123456, 0.5, float("nan")][:n]}
        | {"share_ci95_low": [0.1, 0.45, float("nan")][:n], "share_ci95_high": [0.14649, 0.55, float("nan")][:n]}
        | {"swap": "interchangeable", "commit": "abc1234"}
        | columns
    )


def write(table: pd.DataFrame, folder) -> None:
    path = folder / studies.VERDICTS
    path.parent.mkdir(parents=True)
    table.to_csv(path, index=False)


@pytest.fixture
def three_studies(tmp_path, monkeypatch):
    """The working directory's own study (2 groups), and under work/: `a` (1 group), `b` (3 groups, its columns in
    another order), `c` that has not run."""
    monkeypatch.chdir(tmp_path)
    tables = {
        "default": verdicts("digits", ["lin", "sym"]),
        "a": verdicts("shapes", ["sym"]),
        "b": verdicts("mnist5k", ["lin", "sym", "conv"]),
    }
    write(tables["default"], tmp_path)
    write(tables["a"], tmp_path / "work" / "a")
    b = tables["b"]
    write(b[list(reversed(b.columns))], tmp_path / "work" / "b")
    (tmp_path / "work" / "c" / "results").mkdir(parents=True)
    return tables


def test_every_study_that_has_run_is_found_and_named(three_studies, tmp_path, monkeypatch):
    found = studies.find_verdicts("work")
    assert [str(p) for p in found] == [str(studies.VERDICTS), *(f"work/{s}/{studies.VERDICTS}" for s in "ab")]
    assert list(studies.studies_of(found)) == ["default", "a", "b"]
    # run from inside the folder it searches, a study is found once, as the working directory's own
    monkeypatch.chdir(tmp_path / "work" / "a")
    assert list(studies.studies_of(studies.find_verdicts(".."))) == ["default", "b"]


def test_the_table_puts_every_study_below_the_other_with_every_column(three_studies):
    table = studies_table.concatenate(studies.studies_of(studies.find_verdicts("work")))
    own = three_studies["default"]
    assert list(table.columns) == ["study", *own.columns]  # provenance (commit) kept
    assert list(table["study"]) == ["default"] * 2 + ["a"] + ["b"] * 3
    for study, expected in three_studies.items():
        got = table[table["study"] == study].drop(columns="study").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_studies_with_other_columns_are_refused_naming_the_file_and_the_columns(three_studies, tmp_path):
    write(verdicts("factors", ["sym"], rule_verdict="yes").drop(columns="fragile"), tmp_path / "work" / "d")
    with pytest.raises(studies.StudiesError) as err:
        studies_table.concatenate(studies.studies_of(studies.find_verdicts("work")))
    message = str(err.value)
    assert message.startswith(f"work/d/{studies.VERDICTS}: its columns differ from {studies.VERDICTS}'s")
    assert "lacks: fragile; has besides: rule_verdict" in message


def test_no_study_is_an_error_that_names_the_key(tmp_path, monkeypatch):
    """A summary of no study is refused rather than written empty: it is a wrong folder more often than a wish."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work" / "c").mkdir(parents=True)
    with pytest.raises(studies.StudiesError, match=r"no study has verdicts: .*\(paper.studies_folder: work\)"):
        studies.find_verdicts("work")
    with pytest.raises(studies.StudiesError, match="no study's verdicts.csv"):
        studies_table.concatenate({})


def test_a_folder_named_like_the_own_study_is_refused(three_studies, tmp_path):
    write(verdicts("digits", ["sym"]), tmp_path / "work" / "default")
    with pytest.raises(studies.StudiesError, match="two studies named 'default'"):
        studies.studies_of(studies.find_verdicts("work"))


def test_the_markdown_shows_the_verdicts_side_by_side_and_the_numbers_to_three_figures(three_studies):
    named = studies.studies_of(studies.find_verdicts("work"))
    table = studies_table.concatenate(named)
    wide = studies_table.side_by_side(table)
    assert list(wide.columns) == ["kind", "family", "default: digits", "a: shapes", "b: mnist5k"]
    cells = wide.set_index("family")
    assert cells.loc["lin"].tolist()[1:] == ["yes (fragile)", "–", "yes (fragile)"]
    assert cells.loc["conv"].tolist()[1:] == ["–", "–", "no"]
    text = studies_table.markdown(table, named)
    assert f"- `b`: `work/b/{studies.VERDICTS}`" in text
    assert (
        "| default | digits | ae | lin | yes (fragile) | encoder | 10 of 10 | no data | – | 0.123 [0.100, 0.146] |"
        in text
    )
    assert "| b | mnist5k | ae | conv | no | encoder | 2 of 10 | no data | – | – | interchangeable |" in text
    assert "| kind | family | default: digits | a: shapes | b: mnist5k |" in text


def test_the_readme_answers_per_study_and_names_the_studies_without_verdicts(three_studies):
    table = studies_table.concatenate(studies.studies_of(studies.find_verdicts("work")))
    lines = answer.study_lines(table, ["default", "a", "b", "mnist1d", "cifar10"])
    assert len(lines) == 4
    low, high = exact_interval(17, 20)  # the own study's R1: 10 + 7 of 20 models
    assert lines[0] == (
        "- `default` on digits: `yes` in 1, `partly` in 1 of 2 groups (1 fragile); compression completes in the "
        f"encoder or at the bottleneck (R1) in 17 of 20 models (0.850 [95% CI {low:.3f}, {high:.3f}])."
    )
    assert lines[2].startswith("- `b` on mnist5k: `yes` in 1, `partly` in 1, `no` in 1 of 3 groups (1 fragile);")
    assert "RA" not in "".join(lines)  # no model with factors
    assert lines[3].startswith("- No published verdicts yet: `mnist1d`, `cifar10` (")


def test_publishing_needs_the_table_across_studies_and_then_the_readme_answers_per_study(tmp_path, monkeypatch):
    paper, published = tmp_path / "paper", tmp_path / "published"
    paper.mkdir()
    for name in ("verdicts.csv", "phantoms.csv"):
        (paper / name).write_bytes((answer.PUBLISHED / name).read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{answer.BEGIN}\nold\n{answer.END}\n")
    monkeypatch.setattr(answer, "PUBLISHED", published)
    assert answer.main(["--publish", "--paper", str(paper), "--readme", str(readme)]) == 1
    assert not published.exists() and "old" in readme.read_text()  # nothing published from half a run
    table = studies_table.concatenate({"default": paper / "verdicts.csv"})
    table.to_csv(paper / "studies_verdicts.csv", index=False)
    assert answer.main(["--publish", "--paper", str(paper), "--readme", str(readme)]) == 0
    assert sorted(p.name for p in published.iterdir()) == ["phantoms.csv", "studies_verdicts.csv", "verdicts.csv"]
    assert "\n- `default` on factors: `yes` in 8 of 8 groups (4 fragile);" in readme.read_text()


def test_the_published_table_across_studies_holds_the_published_verdicts_and_the_readme_only_it():
    """The default study's rows are the published verdicts.csv; the README answers for the studies in the table
    and names every other study as having no published verdicts (today: all but the default)."""
    across = pd.read_csv(answer.PUBLISHED / answer.ACROSS_STUDIES)
    own = across[across["study"] == "default"].drop(columns="study").reset_index(drop=True)
    pd.testing.assert_frame_equal(own, pd.read_csv(answer.PUBLISHED / "verdicts.csv"))
    block = answer.readme_block(answer.PUBLISHED)
    assert block in (REPO / "README.md").read_text()
    for study, dataset in across[["study", "dataset"]].drop_duplicates().itertuples(index=False):
        assert f"\n- `{study}` on {dataset}: " in block
    others = [s for s in answer.known_studies() if s not in set(across["study"])]
    assert not others or f"- No published verdicts yet: {', '.join(f'`{s}`' for s in others)} (" in block
    assert not any(f"- `{s}` on" in block for s in others)


def test_the_studies_summary_target_reads_the_studies_that_have_run(tmp_path):
    write(verdicts("shapes", ["sym"]), tmp_path / "elsewhere" / "a")
    write(verdicts("mnist5k", ["lin", "sym"]), tmp_path / "elsewhere" / "b")
    snakemake(tmp_path, "--cores", "1", "studies_summary", "--config", "paper={studies_folder: elsewhere}")
    table = pd.read_csv(tmp_path / "results/paper/studies_verdicts.csv")
    assert list(table["study"]) == ["a", "b", "b"] and list(table.columns)[:2] == ["study", "dataset"]
    assert "| kind | family | a: shapes | b: mnist5k |" in (tmp_path / "results/paper/studies_verdicts.md").read_text()
    # the default folder, work/, has no study: refused before any job, naming the key
    proc = snakemake(tmp_path / "empty", "--cores", "1", "studies_summary", check=False)
    assert proc.returncode != 0 and "(paper.studies_folder: work)" in proc.stdout + proc.stderr
    assert not (tmp_path / "empty" / "results").exists()
