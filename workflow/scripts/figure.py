"""Draw one figure from one table, named by params.figure (a function of aedissect.plotting, or "module.function")."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import importlib

import pandas as pd

from aedissect import plotting, style

table = pd.read_csv(snakemake.input[0])
extra = dict(snakemake.wildcards.items()) | dict(snakemake.params.get("options", {}))
# "function" names a function of aedissect.plotting, "module.function" one of aedissect.<module>
module_name, _, function = snakemake.params.figure.rpartition(".")
module = importlib.import_module(f"aedissect.{module_name}") if module_name else plotting
fig = getattr(module, function)(table, **extra)
style.save(fig, snakemake.output.pdf, snakemake.output.png, dpi=snakemake.params.dpi)
