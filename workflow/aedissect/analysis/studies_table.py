"""One table of verdicts across studies (the ``studies_summary`` target): every study's verdicts.csv, one below
the other with a ``study`` column (``studies_verdicts.csv``); the same side by side in Markdown
(``studies_verdicts.md``). Which studies there are: ``studies``; the README's line per study: ``answer``."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import pandas as pd

from aedissect.analysis.paper import to_markdown
from aedissect.analysis.studies import StudiesError
from aedissect.formatting import MISSING, number

GROUP = ["dataset", "kind", "family"]


def concatenate(named: dict[str, Path]) -> pd.DataFrame:
    """The verdict tables of ``named`` (study -> verdicts.csv, in that order) in one long table: ``study`` first,
    then every column of the verdict tables, which must all have the same columns (in any order)."""
    if not named:
        raise StudiesError("no study's verdicts.csv to put in one table")
    tables, first = [], None
    for study, path in named.items():
        table = pd.read_csv(path)
        if "study" in table.columns:
            raise StudiesError(f"{path}: a verdicts table has no column 'study' (it is this table's)")
        if first is None:
            first, columns = path, list(table.columns)
        elif set(table.columns) != set(columns):
            lacks = [c for c in columns if c not in table.columns]
            extra = [c for c in table.columns if c not in columns]
            raise StudiesError(
                f"{path}: its columns differ from {first}'s (lacks: {', '.join(lacks) or 'none'}; has besides: "
                f"{', '.join(extra) or 'none'}); rerun one study's paper target with the other's code"
            )
        tables.append(table[columns].assign(study=study))
    out = pd.concat(tables, ignore_index=True)
    return out[["study", *columns]]


def _models(row, rule: str) -> str:
    """A rule's count of models, ``k of n``, or a dash where it has none."""
    n = row.get(f"{rule}_n")
    return f"{int(row[f'{rule}_k'])} of {int(n)}" if isinstance(n, numbers.Real) and n > 0 else MISSING


def _share(row) -> str:
    mean = row.get("share_mean", math.nan)
    if not (isinstance(mean, numbers.Real) and math.isfinite(mean)):
        return MISSING
    return f"{number(mean)} [{number(row['share_ci95_low'])}, {number(row['share_ci95_high'])}]"


def _verdict(row) -> str:
    return f"{row['verdict']} (fragile)" if str(row.get("fragile")) == "True" else str(row["verdict"])


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict per model kind and family (rows) and study and data set (columns); a dash where a study has no
    such group."""
    cells = table.assign(
        where=table["study"] + ": " + table["dataset"], cell=[_verdict(r) for _, r in table.iterrows()]
    )
    order = list(dict.fromkeys(cells["where"]))
    wide = cells.pivot_table(index=["kind", "family"], columns="where", values="cell", aggfunc="first")
    wide = wide.reindex(columns=order).fillna(MISSING)
    wide.columns.name = None
    return wide.reset_index()


def detail(table: pd.DataFrame) -> pd.DataFrame:
    """One row per study, data set, kind and family: the verdict and each rule's outcome with its numbers."""
    rows = []
    for _, row in table.iterrows():
        rows.append(
            {"study": row["study"], "data set": row["dataset"], "kind": row["kind"], "family": row["family"]}
            | {"verdict": _verdict(row), "R1 compression": row.get("compression", MISSING)}
            | {"R1 models": _models(row, "compression"), "RA abstraction": row.get("abstraction", MISSING)}
            | {"RA models": _models(row, "abstraction"), "R2 encoder share [95% CI]": _share(row)}
            | {"R3 swap": row.get("swap", MISSING)}
        )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, named: dict[str, Path]) -> str:
    """studies_verdicts.md: where each study's verdicts come from, the verdicts side by side, then every rule's
    numbers per group (three significant figures)."""
    sources = "\n".join(f"- `{study}`: `{path}`" for study, path in named.items())
    return (
        "# Verdicts across studies\n\n"
        "Each study's `results/paper/verdicts.csv`, one table (`studies_verdicts.csv`); the rules: "
        "docs/methods.md. Only studies that have run are here:\n\n"
        f"{sources}\n\n## The verdict per model kind and family\n\n{to_markdown(side_by_side(table))}\n"
        "## Each rule per group\n\n"
        "R1, RA: the models whose compression completes in the encoder or at the bottleneck, and whose decoder adds "
        "no abstraction, k of n; R2: the encoder's Shapley share of the work, mean [95% CI] (in the verdict only "
        "where it passes its phantoms); R3: beside the verdict.\n\n"
        f"{to_markdown(detail(table))}"
    )
