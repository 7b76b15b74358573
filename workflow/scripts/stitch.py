"""Stitch the bottlenecks of every configured pair of models of one group (same data set, kind, size)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect import interventions

interventions.stitching_group(
    snakemake.params.runs,
    list(snakemake.input.models),
    data_path=snakemake.input.data,
    options=dict(snakemake.params.options),
    threads=snakemake.threads,
    device=snakemake.params.device,
    out_path=snakemake.output[0],
)
