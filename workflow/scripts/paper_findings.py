"""Findings from the result tables: per-run quantities, summaries over seeds, verdicts and how they hold up under
other rule settings (verdict_sensitivity.csv), the controls, findings.md (and as HTML for the report), the report's
front page."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from aedissect import io
from aedissect.analysis import answer, calibration, compression, findings, paper

opts = snakemake.params.options
inputs = dict(snakemake.input.items())
runs = pd.read_csv(inputs["runs"])
metrics = pd.read_csv(inputs["train_metrics"])
tolerance, majority = opts["completion_tolerance"], opts["majority"]

parts = [metrics[["run_id"]].assign(quantity="test_mse", value=metrics["test_mse"])]
profiles = None
if "layer_profiles" in inputs:
    profiles = pd.read_csv(inputs["layer_profiles"])
    parts += calibration.rule_quantities(profiles, tolerance)
if "encoder_share" in inputs:
    share = pd.read_csv(inputs["encoder_share"])
    parts += [findings.encoder_shares(share), findings.parameter_fractions(share)]
critical = {}
if "layer_criticality" in inputs:
    crit = findings.criticality_rows(pd.read_csv(inputs["layer_criticality"]))
    parts.append(findings.critical_layers(crit))
    critical = findings.critical_layer_text(crit, runs, majority)
if "stitching" in inputs:
    parts.append(findings.stitch_penalties(findings.stitch_rows(pd.read_csv(inputs["stitching"]))))
controls = pd.read_csv(inputs["controls"]) if "controls" in inputs else None
parameters = pd.read_csv(inputs["share_vs_parameters"]) if "share_vs_parameters" in inputs else None

# the phantoms first: only a rule that gives every phantom its answer enters the verdicts
phantoms, tables = None, [None, None, None]
if "phantom_profiles" in inputs:
    tables = [pd.read_csv(inputs[f"phantom_{name}"]) for name in ("profiles", "work", "list")]
    phantoms = calibration.phantom_table(*tables)
calibrated = calibration.calibrated(phantoms)
rules = tuple(rule for rule in findings.VERDICT_RULES if not calibrated[rule])

per_run = findings.quantities(runs, parts)
summary = findings.summarize_groups(per_run)
# a variant of a rule the sweep tries must pass the phantoms too, or it makes no verdict fragile
checks = calibration.setting_checks(*tables, findings.rule_settings(per_run, profiles, rules))
sensitivity = findings.sensitivity(
    per_run, profiles, majority, rules=rules, checks=checks, controls=controls, runs=runs
)
verdicts = findings.verdicts(summary, majority, rules)
verdicts = findings.apply_controls(findings.mark_fragile(verdicts, sensitivity), runs, controls)
swap = pd.read_csv(inputs["swap"]) if "swap" in inputs else None
verdicts = findings.with_swap_rule(verdicts, swap)
completion = compression.completion_rule(profiles)
text = findings.markdown(
    summary, verdicts, critical, tolerance, majority, controls=controls, completion=completion, parameters=parameters
)
# the factor locus on data with known factors: a section of findings.md and factor_locus.csv
locus = pd.read_csv(inputs["encoding_locus"]) if "encoding_locus" in inputs else None
factor_locus = findings.factor_locus(locus, runs)
text = findings.with_section(text, findings.factor_locus_markdown(factor_locus, runs, locus))
text = findings.with_section(text, calibration.phantoms_markdown(phantoms, calibrated), before="## Controls")
text = findings.with_section(
    text, answer.findings_section(verdicts, phantoms, calibrated), before=calibration.PHANTOMS_HEADING
)

io.write_csv(phantoms if phantoms is not None else pd.DataFrame(columns=calibration.PHANTOM_COLUMNS),
             snakemake.output.phantoms)  # fmt: skip
io.write_csv(per_run, snakemake.output.per_run)
io.write_csv(summary, snakemake.output.summary)
io.write_csv(verdicts, snakemake.output.verdicts)
io.write_csv(sensitivity, snakemake.output.sensitivity)
io.write_csv(factor_locus, snakemake.output.factor_locus)
io.write_text(
    paper.to_html(findings.sensitivity_table(sensitivity), findings.SENSITIVITY_CAPTION),
    snakemake.output.sensitivity_html,
)
io.write_text(text, snakemake.output.markdown)
io.write_text(paper.markdown_html(text, "Findings"), snakemake.output.html)
intro = Path(snakemake.input.intro).read_text()
io.write_text(
    findings.front_page_rst(verdicts, intro, answer.rst(verdicts, phantoms, calibrated)), snakemake.output.front_page
)
