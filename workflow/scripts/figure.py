"""Draw one figure from one table, named by params.figure (a function of aedissect.plotting)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from aedissect import plotting, style

table = pd.read_csv(snakemake.input[0])
extra = dict(snakemake.wildcards.items())
fig = getattr(plotting, snakemake.params.figure)(table, **extra)
style.save(fig, snakemake.output.pdf, snakemake.output.png, dpi=snakemake.params.dpi)
