"""One paper table from one CSV: the table as CSV, Markdown, LaTeX and HTML (the report's)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from aedissect import io
from aedissect.analysis import paper

name = snakemake.params.table
table = getattr(paper, snakemake.params.builder)(pd.read_csv(snakemake.input.table))
io.write_csv(table, snakemake.output.csv)
io.write_text(paper.to_markdown(table), snakemake.output.md)
io.write_text(paper.to_latex(table, snakemake.params.caption, f"tab:{name}"), snakemake.output.tex)
io.write_text(paper.to_html(table, snakemake.params.caption), snakemake.output.html)
