"""Prepare one data set into results/data/ and record its checksum."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect import io
from aedissect.nets import data

info = data.prepare(snakemake.wildcards.dataset, snakemake.params.options, snakemake.output.data)
io.write_json(info, snakemake.output.info)
logging.info("prepared %s", info)
