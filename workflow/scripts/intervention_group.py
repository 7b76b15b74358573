"""One intervention on every model of one group (same data set, kind, bottleneck and activation): rule
criticality re-initialises, re-randomises, rewinds and retrains every layer; rule stitching stitches the
bottlenecks of every configured pair. The rule's name picks ``interventions.<rule>_group``."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

from aedissect.nets import interventions, training

getattr(interventions, f"{snakemake.rule}_group")(
    snakemake.params.runs,
    list(snakemake.input.models),
    data_path=snakemake.input.data,
    options=dict(snakemake.params.options),
    threads=snakemake.threads,
    device=snakemake.params.device,
    out_path=snakemake.output[0],
    state_dir=training.state_dir(snakemake.output[0]),
    # read from the config, not a param: switching TensorBoard on or off must rerun no job (tensorboard_folder)
    tensorboard=training.tensorboard_folder(snakemake.config, snakemake.rule),
)
