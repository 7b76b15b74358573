"""Findings from the result tables: per-run quantities, summaries over seeds, verdicts, findings.md (and as HTML for
the report), the report's front page."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from aedissect import io
from aedissect.analysis import findings, paper

opts = snakemake.params.options
inputs = dict(snakemake.input.items())
runs = pd.read_csv(inputs["runs"])
metrics = pd.read_csv(inputs["train_metrics"])

parts = [metrics[["run_id"]].assign(quantity="test_mse", value=metrics["test_mse"])]
if "layer_profiles" in inputs:
    parts.append(findings.compression_offsets(pd.read_csv(inputs["layer_profiles"]), opts["completion_tolerance"]))
if "encoder_share" in inputs:
    parts.append(findings.encoder_shares(pd.read_csv(inputs["encoder_share"])))
critical = {}
if "layer_criticality" in inputs:
    crit = findings.criticality_rows(pd.read_csv(inputs["layer_criticality"]))
    parts.append(findings.critical_layers(crit))
    critical = findings.critical_layer_text(crit, runs, opts["majority"])
if "stitching" in inputs:
    parts.append(findings.stitch_penalties(findings.stitch_rows(pd.read_csv(inputs["stitching"]))))

per_run = findings.quantities(runs, parts)
summary = findings.summarize_groups(per_run)
verdicts = findings.verdicts(summary, opts["majority"])
text = findings.markdown(summary, verdicts, critical, opts["completion_tolerance"], opts["majority"])

io.write_csv(per_run, snakemake.output.per_run)
io.write_csv(summary, snakemake.output.summary)
io.write_csv(verdicts, snakemake.output.verdicts)
io.write_text(text, snakemake.output.markdown)
io.write_text(paper.markdown_html(text, "Findings"), snakemake.output.html)
intro = Path(snakemake.input.intro).read_text()
io.write_text(findings.front_page_rst(verdicts, intro), snakemake.output.front_page)
