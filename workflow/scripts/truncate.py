"""Cut every seed of one grid cell at every layer: per-run layer profiles, the cell's CKA matrices and its
reparametrisation check."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

import scipy.linalg  # noqa: F401  loads scipy's own OpenBLAS (see below)
from threadpoolctl import threadpool_limits

from aedissect.nets import probes

# threadpool_limits reaches only the libraries already loaded, and scipy's OpenBLAS (the label probe's L-BFGS-B
# loads it on first use) is not numpy's: unlimited, its threads spin against the job's and the other jobs' on the
# cores (on 2 loaded cores the label probes of a 10-seed cell took 30 s instead of 2)

with threadpool_limits(limits=snakemake.threads):  # numpy/BLAS may not use more cores than the job holds
    probes.truncate_cell(
        snakemake.params.runs,
        model_paths=list(snakemake.input.models),
        data_path=snakemake.input.data,
        options=snakemake.params.options | {"threads": snakemake.threads, "device": snakemake.params.device},
        profile_paths=list(snakemake.output.profiles),
        cka_path=snakemake.output.cka,
        reparam_path=snakemake.output.reparam,
    )
