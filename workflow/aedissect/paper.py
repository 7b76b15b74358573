"""The paper's figure and table list (in paper order) and tables as LaTeX and Markdown.

Each figure is drawn from one CSV table by a function ``module.function(table, **kwargs)`` returning a
matplotlib figure; ``results/paper/fig<N>_<name>.{pdf,png}`` is written next to a copy of that table,
``fig<N>_<name>.csv``. A figure whose table comes from a rule that the workflow does not define is left
out and the later figures move up, so numbers always run 1, 2, 3, ... in paper order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Figure:
    name: str  # the file stem after fig<N>_
    table: str  # the CSV it is drawn from, relative to the working directory
    producer: str  # the rule that writes the table; the figure is left out if the workflow has no such rule
    module: str  # aedissect.<module>
    function: str
    caption: str  # caption file in workflow/report/
    category: str  # report category (the experiment)
    kwargs: dict = field(default_factory=dict)


FIGURES = [
    Figure(
        "reconstruction",
        "results/tables/train_metrics.csv",
        "training_tables",
        "plotting",
        "reconstruction_error",
        "paper_reconstruction.rst",
        "Training",
    ),
    Figure(
        "training_curves",
        "results/tables/train_curves.csv",
        "training_tables",
        "plotting",
        "training_curves",
        "training_curves.rst",
        "Training",
    ),
    Figure(
        "compression_profiles",
        "results/tables/layer_profiles.csv",
        "truncation_tables",
        "plotting_truncation",
        "geometry_profiles",
        "paper_compression_profiles.rst",
        "Truncation",
    ),
    Figure(
        "reconstruction_profiles",
        "results/tables/layer_profiles.csv",
        "truncation_tables",
        "plotting_truncation",
        "reconstruction_profiles",
        "paper_reconstruction_profiles.rst",
        "Truncation",
    ),
    Figure(
        "freezing",
        "results/tables/freeze.csv",
        "intervention_tables",
        "plotting_interventions",
        "freeze_prefix",
        "paper_freezing.rst",
        "Interventions",
    ),
    Figure(
        "criticality",
        "results/tables/layer_criticality.csv",
        "intervention_tables",
        "plotting_interventions",
        "criticality_heatmap",
        "paper_criticality.rst",
        "Interventions",
    ),
    Figure(
        "stitching",
        "results/tables/stitching.csv",
        "intervention_tables",
        "plotting_interventions",
        "stitching_matrix",
        "paper_stitching.rst",
        "Interventions",
    ),
    Figure(
        "verdict",
        "results/paper/findings_runs.csv",
        "paper_findings",
        "plotting_paper",
        "verdict_summary",
        "paper_verdict.rst",
        "Findings",
    ),
]

# The tables findings.md is computed from, beyond the training tables: key -> (path, producer rule)
FINDINGS_INPUTS = {
    "layer_profiles": ("results/tables/layer_profiles.csv", "truncation_tables"),
    "freeze": ("results/tables/freeze.csv", "intervention_tables"),
    "layer_criticality": ("results/tables/layer_criticality.csv", "intervention_tables"),
    "stitching": ("results/tables/stitching.csv", "intervention_tables"),
}

# Paper tables: (name, source CSV, producer rule, builder in this module)
TABLES = [
    ("reconstruction", "results/tables/train_summary.csv", "training_tables", "reconstruction_table"),
    ("findings", "results/paper/findings.csv", "paper_findings", "findings_table"),
    ("verdicts", "results/paper/verdicts.csv", "paper_findings", "verdict_table"),
]


def numbered(available_rules) -> list[tuple[int, Figure]]:
    """(number, figure) for the figures whose producing rule exists, numbered 1.. in paper order.

    ``available_rules`` is a predicate name -> bool (Snakemake's ``rules.has``) or a collection of names.
    """
    has = available_rules if callable(available_rules) else available_rules.__contains__
    return list(enumerate((fig for fig in FIGURES if has(fig.producer)), start=1))


def figure_stem(number: int, figure: Figure) -> str:
    return f"fig{number}_{figure.name}"


def tables(available_rules) -> list[tuple[int, str, str, str]]:
    has = available_rules if callable(available_rules) else available_rules.__contains__
    return [(i, *t) for i, t in enumerate((t for t in TABLES if has(t[2])), start=1)]


def table_stem(number: int, name: str) -> str:
    return f"table{number}_{name}"


# ---------------------------------------------------------------- tables


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "–"
        if isinstance(value, int):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _ci(row) -> str:
    if not math.isfinite(row["ci95_low"]):
        return f"{_fmt(row['mean'])} (n={int(row['n'])})"
    return f"{_fmt(row['mean'])} [{_fmt(row['ci95_low'])}, {_fmt(row['ci95_high'])}] (n={int(row['n'])})"


def reconstruction_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Test MSE per cell: mean [95% CI] (n seeds)."""
    rows = summary[summary["metric"] == "test_mse"].sort_values(["dataset", "kind", "family", "arch", "bottleneck"])
    out = rows[["dataset", "kind", "family", "arch", "bottleneck"]].copy()
    out["test MSE [95% CI] (n)"] = [_ci(r) for r in rows.to_dict("records")]
    return out.reset_index(drop=True)


def findings_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per data set, kind and family; one column per quantity: mean [95% CI] (n seeds)."""
    from aedissect.findings import QUANTITY_LABELS

    summary = summary.copy()
    summary["cell"] = [_ci(r) for r in summary.to_dict("records")]
    wide = summary.pivot_table(index=["dataset", "kind", "family"], columns="quantity", values="cell", aggfunc="first")
    order = [q for q in QUANTITY_LABELS if q in wide.columns]
    wide = wide[order].rename(columns=QUANTITY_LABELS)
    wide.columns.name = None
    return wide.reset_index()


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    return verdicts[["dataset", "kind", "family", "compression", "work", "verdict"]].rename(
        columns={"compression": "R1 compression", "work": "R2 work"}
    )


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (| escaped in cells)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); every cell escaped."""
    spec = "l" * len(table.columns)
    lines = [
        r"\begin{table*}[t]",
        r"\centering\small",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for row in table.itertuples(index=False):
        lines.append(" & ".join(latex_escape(_fmt(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


TABLE_CAPTIONS = {
    "reconstruction": "Test reconstruction error per architecture: mean over seeds with Student-t 95% CI and n.",
    "findings": "Where compression completes (layers relative to the bottleneck; negative = encoder), the encoder "
    "share of the work, critical layers and the stitching penalty: mean over seeds [95% CI] (n seeds).",
    "verdicts": "Verdict per data set, model kind and family by the rules R1 (compression) and R2 (work).",
}
