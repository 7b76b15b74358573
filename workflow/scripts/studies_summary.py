"""Every study's verdicts in one table (studies_verdicts.csv) and side by side in Markdown (studies_verdicts.md)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import studies, studies_table

named = studies.studies_of(list(snakemake.input))
table = studies_table.concatenate(named)
io.write_csv(table, snakemake.output.csv)
io.write_text(studies_table.markdown(table, named), snakemake.output.md)
