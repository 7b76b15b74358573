"""Truncation tables: layer profiles of all runs, their summary over seeds, encoding loci, CKA matrices and the
reparametrisation check."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import truncation_tables

tables = truncation_tables.tables(
    snakemake.params.runs, snakemake.input.profiles, snakemake.input.cka, snakemake.input.reparam
)
for name, table in tables.items():
    io.write_csv(table, snakemake.output[name])
