"""The swap matrix (rule swap): every architecture's encoder into every other's decoder at the bottleneck."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from aedissect import io
from aedissect.analysis import intervention_tables as iv

io.write_csv(iv.swap_table(pd.read_csv(snakemake.input.stitching)), snakemake.output.swap)
