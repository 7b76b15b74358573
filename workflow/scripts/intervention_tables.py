"""Intervention tables: freeze sweep and encoder share, layer criticality, stitching; each with its summary."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import intervention_tables as iv

inp, out = snakemake.input, snakemake.output
freeze = iv.freeze_table(snakemake.params.freeze_runs, list(inp.freeze), list(inp.normal_metrics))
share = iv.encoder_share(freeze)
io.write_csv(freeze, out.freeze)
io.write_csv(iv.freeze_summary(freeze), out.freeze_summary)
io.write_csv(share, out.share)
io.write_csv(iv.share_summaries(share), out.share_summary)
io.write_csv(iv.share_vs_parameters(share), out.share_vs_parameters)

runs = snakemake.params.runs
criticality = iv.with_config(runs, list(inp.criticality))
io.write_csv(criticality, out.criticality)
io.write_csv(iv.criticality_summary(criticality), out.criticality_summary)
stitching = iv.stitching_table(runs, list(inp.stitching))
io.write_csv(stitching, out.stitching)
io.write_csv(iv.stitching_summary(stitching), out.stitching_summary)
