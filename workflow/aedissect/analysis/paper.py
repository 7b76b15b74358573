"""The paper's tables as LaTeX, Markdown and HTML (the report's); which figures and tables the paper has, in
which order, is ``paper_outline``."""

from __future__ import annotations

import html
import re

import pandas as pd

from aedissect.formatting import INFINITY, MINUS, TIMES, estimate, is_number_cell, number


def _ci(row) -> str:
    return estimate(row, ci_label="")  # the column header names the interval


def reconstruction_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Test MSE per cell: mean [95% CI] (n seeds), beside PCA-z's test MSE at the cell's bottleneck (the
    ``pca_mse`` rows of the summary; absent from a summary made without the references)."""
    keys = ["dataset", "kind", "family", "arch", "bottleneck"]
    rows = summary[summary["metric"] == "test_mse"].sort_values(keys)
    out = rows[keys].copy()
    out["test MSE [95% CI] (n)"] = [_ci(r) for r in rows.to_dict("records")]
    pca = summary[summary["metric"] == "pca_mse"].drop_duplicates(keys).set_index(keys)["mean"]
    if len(pca):
        out["PCA-z test MSE"] = [pca.get(tuple(r), float("nan")) for r in rows[keys].itertuples(index=False)]
    return out.reset_index(drop=True)


def findings_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per data set, kind and family; one column per quantity: mean [95% CI] (n seeds)."""
    from aedissect.analysis.findings import QUANTITY_LABELS

    summary = summary.copy()
    summary["cell"] = [_ci(r) for r in summary.to_dict("records")]
    wide = summary.pivot_table(index=["dataset", "kind", "family"], columns="quantity", values="cell", aggfunc="first")
    order = [q for q in QUANTITY_LABELS if q in wide.columns]
    wide = wide[order].rename(columns=QUANTITY_LABELS)
    wide.columns.name = None
    return wide.reset_index()


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict per group with its rules' outcomes; rule R3 (swap) beside it where the findings have it."""
    columns = ["dataset", "kind", "family", "compression", "abstraction", "work", "verdict", "swap"]
    names = {"compression": "R1", "abstraction": "RA", "work": "R2", "swap": "R3 (beside)"}
    return verdicts[[c for c in columns if c in verdicts.columns]].rename(columns=names)


def _number_columns(table: pd.DataFrame) -> list[bool]:
    """Per column: whether every cell holds a number or a summary of one (set right-aligned)."""
    return [len(table) > 0 and all(is_number_cell(v) for v in table[c]) for c in table.columns]


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (| escaped in cells), number columns right-aligned."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in _number_columns(table)) + "|"
    body = [
        "| " + " | ".join(number(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


# Snakemake's report shows an HTML result in a frame of its own, which scrolls from the top (an image or the front
# page, centred in the report's pane, cannot): the tables and findings.md go into the report as small HTML pages.
HTML_STYLE = """\
body { font: 15px/1.5 system-ui, sans-serif; color: #1f2937; margin: 1.5em auto; max-width: 60em; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #d1d5db; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { border-bottom: 2px solid #6b7280; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
caption { caption-side: top; text-align: left; padding-bottom: 0.5em; }
code { font-size: 0.9em; background: #f3f4f6; padding: 0 0.2em; }
"""


def html_page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>\n{HTML_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def to_html(table: pd.DataFrame, caption: str) -> str:
    """A table as an HTML page, its caption above it, number columns right-aligned."""
    numeric = _number_columns(table)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = [
        "<tr>"
        + "".join(
            f'<td class="number">{html.escape(number(v))}</td>' if n else f"<td>{html.escape(number(v))}</td>"
            for v, n in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in table.itertuples(index=False)
    ]
    body = [f"<table>\n<caption>{html.escape(caption)}</caption>", f"<thead><tr>{header}</tr></thead>", "<tbody>"]
    return html_page(caption, "\n".join([*body, *rows, "</tbody>\n</table>\n"]))


MARKDOWN_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
]


def _inline_html(text: str) -> str:
    text = html.escape(text, quote=False)
    for pattern, replacement in MARKDOWN_INLINE:
        text = pattern.sub(replacement, text)
    return text


def markdown_html(text: str, title: str) -> str:
    """findings.md as an HTML page. It is written by ``findings.markdown``, which uses only headings (# and ##),
    paragraphs, bullet lists (continuation lines indented), **bold** and `code`: those are all this converts."""
    body = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if lines[0].startswith("#"):
            level, _, heading = lines[0].partition(" ")
            body.append(f"<h{len(level)}>{_inline_html(heading)}</h{len(level)}>")
            lines = lines[1:]
        if not lines:
            continue
        if lines[0].startswith("- "):
            items = []
            for line in lines:
                if line.startswith("- "):
                    items.append(line[2:])
                else:
                    items[-1] += " " + line.strip()
            body.append("<ul>\n" + "\n".join(f"<li>{_inline_html(item)}</li>" for item in items) + "\n</ul>")
        else:
            body.append(f"<p>{_inline_html(' '.join(line.strip() for line in lines))}</p>")
    return html_page(title, "\n".join(body) + "\n")


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
    MINUS: "$-$",
    INFINITY: r"$\infty$",
}
# formatting.number writes 8.60×10⁻⁵; LaTeX gets $\times 10^{-5}$
POWER_OF_TEN = re.compile(f"{TIMES}10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
UNSUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def latex_escape(text) -> str:
    pieces = POWER_OF_TEN.split(str(text))  # text, exponent, text, exponent, ..., text
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(rf"$\times 10^{{{piece.translate(UNSUPERSCRIPT)}}}$")
        else:
            out.append("".join(LATEX_SPECIAL.get(ch, ch) for ch in piece))
    return "".join(out)


# What a two-column page's \textwidth (about 7 in) holds at \small: about 110 characters, each column's padding
# (2 \tabcolsep) costing about 3 of them, and at most 8 columns. A wider table is transposed.
LATEX_TEXTWIDTH_CHARS = 110
LATEX_COLUMN_PADDING_CHARS = 3
MAX_LATEX_COLUMNS = 8
# A transposed table's blocks: a wrapped label column and at most this many value columns, as fractions of
# \textwidth: 0.19 + 3 x 0.23 plus 8 \tabcolsep (6 pt each, 0.095 \textwidth) stays under the width.
LATEX_BLOCK_COLUMNS = 3
LATEX_LABEL_WIDTH = 0.19
LATEX_VALUE_WIDTH = 0.23


def _natural_width(table: pd.DataFrame) -> int:
    """About how many characters wide the table is set untransposed (the widest cell of each column)."""
    cells = [[str(c), *map(number, table[c])] for c in table.columns]
    return sum(max(map(len, column)) + LATEX_COLUMN_PADDING_CHARS for column in cells)


def _latex_row(cells) -> str:
    return " & ".join(cells) + r" \\"


def _transposed(table: pd.DataFrame, label: str) -> tuple[str, list[str]]:
    """(column spec, rows) of a wide table set as blocks: one per value of its leading text columns but the
    last, whose values head at most LATEX_BLOCK_COLUMNS columns; the other columns become rows."""
    numeric = _number_columns(table)
    if True not in numeric or not numeric.index(True):
        raise ValueError(f"table {label}: {len(table.columns)} columns and no leading text column to transpose on")
    keys = list(table.columns[: numeric.index(True)])
    block_keys, column_key = keys[:-1], keys[-1]
    values = [c for c in table.columns if c not in keys]
    blocks = list(table.groupby(block_keys, sort=False)) if block_keys else [((), table)]
    per_block = min(LATEX_BLOCK_COLUMNS, max(len(block) for _, block in blocks))
    spec = rf">{{\raggedright\arraybackslash}}p{{{LATEX_LABEL_WIDTH}\textwidth}}" + per_block * (
        rf">{{\raggedleft\arraybackslash}}p{{{LATEX_VALUE_WIDTH}\textwidth}}"
    )
    rows = []
    for key, block in blocks:
        title = rf"\textbf{{{latex_escape(', '.join(map(str, key)))}}}" if block_keys else ""
        for start in range(0, len(block), per_block):
            chunk = block.iloc[start : start + per_block]
            pad = [""] * (per_block - len(chunk))
            rows += [r"\midrule" if rows else r"\toprule"]
            rows += [_latex_row([title, *map(latex_escape, chunk[column_key]), *pad]), r"\midrule"]
            rows += [_latex_row([latex_escape(v), *(latex_escape(number(x)) for x in chunk[v]), *pad]) for v in values]
    return spec, rows


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs,array}); every cell escaped, number columns right-aligned.

    A table of more than MAX_LATEX_COLUMNS columns or LATEX_TEXTWIDTH_CHARS characters would run off a two-column
    page: it is transposed into blocks (``_transposed``) whose columns wrap within \\textwidth.
    """
    too_wide = len(table.columns) > MAX_LATEX_COLUMNS or _natural_width(table) > LATEX_TEXTWIDTH_CHARS
    if too_wide and any(_number_columns(table)):
        spec, rows = _transposed(table, label)
    else:
        # a table of words only has nothing to transpose on: its columns wrap instead, each an equal share of the page
        width = f"{0.95 / len(table.columns):.3f}"
        spec = "".join(
            ("r" if n else "l") if not too_wide else rf">{{\raggedright\arraybackslash}}p{{{width}\textwidth}}"
            for n in _number_columns(table)
        )
        header = _latex_row(latex_escape(c) for c in table.columns)
        body = [_latex_row(latex_escape(number(v)) for v in row) for row in table.itertuples(index=False)]
        rows = [r"\toprule", header, r"\midrule", *body]
    lines = [
        r"\begin{table*}[t]",
        r"\centering\small",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        *rows,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table*}",
    ]
    return "\n".join(lines) + "\n"
