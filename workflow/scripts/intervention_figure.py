"""Draw one intervention figure (a function of aedissect.plotting_interventions) from its table."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from aedissect import plotting_interventions, style

fig = getattr(plotting_interventions, snakemake.wildcards.figure)(pd.read_csv(snakemake.input[0]))
style.save(fig, snakemake.output.pdf, snakemake.output.png, dpi=snakemake.params.dpi)
