"""Which studies have verdicts: the working directory's own study and every study run in a folder of its own.

A study run with ``snakemake --configfile studies/<study>.yaml --directory work/<study> paper`` leaves its verdicts in
``work/<study>/results/paper/verdicts.csv``; the study of the working directory itself (``config.yaml``'s, the
default study, when run from the repository's root) has them in ``results/paper/verdicts.csv``. The
``studies_summary`` target puts them in one table (``studies_table``).

The workflow reads this module when it parses the rules, so it imports only the standard library (no pandas).
"""

from __future__ import annotations

from pathlib import Path

VERDICTS = Path("results/paper/verdicts.csv")  # a study's verdicts, relative to its working directory
OWN_STUDY = "default"  # the working directory's own study


class StudiesError(ValueError):
    """No study has verdicts, or two of them cannot be put in one table."""


def find_verdicts(folder, own: Path = VERDICTS) -> list[Path]:
    """The working directory's own ``own`` when it exists, then every ``folder/<study>/results/paper/verdicts.csv``
    in the order of the study names. Studies that have not run are not there: nothing is made up for them.

    Raises StudiesError when there is none: a summary of no study is a wrong folder more often than a wish."""
    own = Path(own)
    found = [own] if own.exists() else []
    for path in sorted(Path(folder).glob(f"*/{VERDICTS}")):
        if not (own.exists() and path.resolve() == own.resolve()):  # the folder may hold the working directory
            found.append(path)
    if not found:
        raise StudiesError(
            f"no study has verdicts: neither {own} nor any {Path(folder) / '<study>' / VERDICTS} exists "
            f"(paper.studies_folder: {folder}); run a study's paper target first"
        )
    return found


def study_of(path, own: Path = VERDICTS) -> str:
    """The study a verdicts.csv belongs to: ``default`` for the working directory's own, else the name of the
    folder that holds its ``results/``."""
    path = Path(path)
    if path == Path(own):
        return OWN_STUDY
    if path.parts[-len(VERDICTS.parts) :] != VERDICTS.parts or len(path.parts) <= len(VERDICTS.parts):
        raise StudiesError(f"{path}: not a study's verdicts (<study>/{VERDICTS})")
    return path.parents[len(VERDICTS.parts) - 1].name


def studies_of(paths, own: Path = VERDICTS) -> dict[str, Path]:
    """Study name -> its verdicts.csv; two files of one name (a folder named ``default``) are refused."""
    named: dict[str, Path] = {}
    for path in map(Path, paths):
        study = study_of(path, own)
        if study in named:
            raise StudiesError(f"{named[study]} and {path}: two studies named {study!r}; rename one folder")
        named[study] = path
    return named
