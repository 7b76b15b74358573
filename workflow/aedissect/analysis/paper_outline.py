"""The paper's figure and table list, in paper order: what Snakemake reads to make one rule per figure and table.

Each figure is drawn from one CSV table by a function ``module.function(table, **kwargs)`` returning a
matplotlib figure; ``results/paper/fig<N>_<name>.{pdf,png}`` is written next to a copy of that table,
``fig<N>_<name>.csv``; it may read more tables of results/paper/ (``Figure.tables``), passed by keyword. A figure
whose table comes from a rule that the workflow does not define is left out and the later figures move up, so
numbers always run 1, 2, 3, ... in paper order.

The workflow reads this module when it parses the rules, so it imports only the standard library (no pandas,
no matplotlib): Snakemake's own process may run where only Snakemake is installed. ``paper`` builds the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    name: str  # the file stem after fig<N>_
    table: str  # the CSV it is drawn from, relative to the working directory
    producer: str  # the rule that writes the table; the figure is left out if the workflow has no such rule
    module: str  # aedissect.analysis.<module>
    function: str
    caption: str  # caption file in workflow/report/
    category: str  # report category (the experiment)
    kwargs: dict = field(default_factory=dict)
    # more tables the function reads, keyword -> CSV, each written by ``producer`` too and kept where it is (a paper
    # table of results/paper/ beside the figure); passed as DataFrames
    tables: dict = field(default_factory=dict)


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
        "results/tables/swap.csv",
        "swap",
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
        # rule R3 (swap) beside R1 and R2: the family-level stitching penalties the verdict table carries
        tables={"verdicts": "results/paper/verdicts.csv"},
    ),
]

# The tables findings.md is computed from, beyond the training tables: key -> (path, producer rule)
FINDINGS_INPUTS = {
    "layer_profiles": ("results/tables/layer_profiles.csv", "truncation_tables"),
    # the factor locus per run (data with known factors): its section of findings.md and factor_locus.csv
    "encoding_locus": ("results/tables/encoding_locus.csv", "truncation_tables"),
    # the phantoms: every rule checked on networks whose answer is known before it enters a verdict
    "phantom_profiles": ("results/tables/phantom_profiles.csv", "phantoms"),
    "phantom_work": ("results/tables/phantom_work.csv", "phantoms"),
    "phantom_list": ("results/tables/phantom_list.csv", "phantoms"),
    "encoder_share": ("results/tables/encoder_share.csv", "intervention_tables"),
    # the share against the encoder's share of the parameters: can "encoder-heavy" and "more encoder parameters"
    # be told apart
    "share_vs_parameters": ("results/tables/share_vs_parameters.csv", "intervention_tables"),
    "layer_criticality": ("results/tables/layer_criticality.csv", "intervention_tables"),
    "stitching": ("results/tables/stitching.csv", "intervention_tables"),
    # the swap matrix: rule R3, are encoders interchangeable across decoders of other architectures
    "swap": ("results/tables/swap.csv", "swap"),
    # the control checks: a failed one makes every verdict at its training budget undecided
    "controls": ("results/tables/controls.csv", "controls_table"),
}

# Paper tables: (name, source CSV, producer rule, builder in aedissect.analysis.paper)
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


TABLE_CAPTIONS = {
    "reconstruction": "Test reconstruction error per architecture: mean over seeds with Student-t 95% CI and n.",
    "findings": "Where compression completes (layers relative to the bottleneck; negative = encoder), the encoder "
    "share of the work, critical layers and the stitching penalty: mean over seeds [95% CI] (n seeds).",
    "verdicts": "Verdict per data set, model kind and family from the rules that give every phantom its answer "
    "(results/paper/phantoms.csv): R1 (compression), RA (abstraction: does a decoder layer hold the known factors "
    "more linearly than the code), R2 (work: the Shapley share of the freezing runs); a rule that misses a phantom is "
    "shown and left out. Beside it, not part of the verdict, rule R3 (swap): are the family's encoders "
    "interchangeable across other decoders.",
}
# the report category each table is shown in, beside the figures of the same experiment
TABLE_CATEGORIES = {"reconstruction": "Training", "findings": "Findings", "verdicts": "Findings"}
