"""results/tables/runs.csv: every run id of the study with its config columns."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import aggregate

io.write_csv(aggregate.runs_table(snakemake.params.runs), snakemake.output[0])
