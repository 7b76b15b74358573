"""Train every freeze variant (same seed and budget, part of the net frozen at init) of every seed of one cell."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

from pathlib import Path

from aedissect.config import run_cell
from aedissect.nets import interventions, training

runs = snakemake.params.runs
interventions.train_freeze_cell(
    runs,
    snakemake.params.specs,
    data_path=snakemake.input.data,
    out_dirs=[str(Path(snakemake.output[0]) / f"s{run['seed']}") for run in runs],
    threads=snakemake.threads,
    device=snakemake.params.device,
    state_dir=training.state_dir(snakemake.output[0]),
    # read from the config, not a param: switching TensorBoard on or off must rerun no job (tensorboard_folder)
    tensorboard=training.tensorboard_folder(snakemake.config, "freeze", run_cell(runs[0])),
)
