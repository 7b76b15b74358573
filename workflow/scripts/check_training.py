"""Fail, naming each run, when a seed of this grid cell diverged; else record every run's final test loss."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io, status

try:
    record = status.check_trained(list(snakemake.input.metrics))
except status.TrainingDiverged as err:
    print(err, file=sys.__stderr__)  # on the terminal too, not only in the log Snakemake points to
    raise
io.write_json(record, snakemake.output[0])
