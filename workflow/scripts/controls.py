"""Check every model of one data set against its closed-form optimum (PCA-z, pPCA): checks and references."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

import scipy.linalg  # noqa: F401  loads scipy's own OpenBLAS first: threadpool_limits reaches only loaded libraries
from threadpoolctl import threadpool_limits

from aedissect.nets.controls import controls_dataset

with threadpool_limits(limits=snakemake.threads):  # numpy/BLAS may not use more cores than the job holds
    controls_dataset(
        snakemake.params.runs,
        model_paths=list(snakemake.input.models),
        data_path=snakemake.input.data,
        checks_path=snakemake.output.checks,
        references_path=snakemake.output.references,
        threads=snakemake.threads,
    )
