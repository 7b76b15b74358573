"""The controls of every run in one tidy table: config columns, check, value, reference, ratio, verdict."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import aggregate

io.write_csv(aggregate.controls_table(snakemake.params.runs, snakemake.input.checks), snakemake.output[0])
