"""One figure from one table; params.figure names a function of aedissect.analysis.plotting, or "module.function"."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import importlib

import pandas as pd

from aedissect.analysis import plotting, style

table = pd.read_csv(snakemake.input[0])
extra = dict(snakemake.wildcards.items()) | dict(snakemake.params.get("options", {}))
# "function" names a function of aedissect.analysis.plotting, "module.function" one of aedissect.analysis.<module>
module_name, _, function = snakemake.params.figure.rpartition(".")
module = importlib.import_module(f"aedissect.analysis.{module_name}") if module_name else plotting
fig = getattr(module, function)(table, **extra)
style.save(fig, snakemake.output.pdf, snakemake.output.png, dpi=snakemake.params.dpi)
