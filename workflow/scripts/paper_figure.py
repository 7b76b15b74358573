"""Draw one paper figure from one table (and the paper tables it names, ``Figure.tables``) and put a copy of that
table beside it."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import importlib
import shutil

import pandas as pd

from aedissect import io
from aedissect.analysis import style

spec = snakemake.params.figure
table = pd.read_csv(snakemake.input.table)
draw = getattr(importlib.import_module(f"aedissect.analysis.{spec['module']}"), spec["function"])
tables = {name: pd.read_csv(snakemake.input[name]) for name in spec.get("tables", [])}
fig = draw(table, **spec["kwargs"], **tables)
style.save(fig, snakemake.output.pdf, snakemake.output.png, dpi=snakemake.params.dpi)
with io.atomic_path(snakemake.output.csv) as tmp:
    shutil.copyfile(snakemake.input.table, tmp)
