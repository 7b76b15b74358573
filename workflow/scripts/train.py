"""Train every seed of one grid cell."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

from pathlib import Path

from aedissect import io
from aedissect.config import run_cell
from aedissect.nets import jobs, training

jobs.train_runs(
    snakemake.params.runs,
    data_path=snakemake.input.data,
    data_info=io.read_json(snakemake.input.info),
    run_dirs=[str(Path(p).parent) for p in snakemake.output.model],
    threads=snakemake.threads,
    device=snakemake.params.device,
    n_examples=snakemake.params.n_examples,
    # read from the config, not a param: switching TensorBoard on or off must rerun no job (tensorboard_folder)
    tensorboard=training.tensorboard_folder(snakemake.config, run_cell(snakemake.params.runs[0])),
)
