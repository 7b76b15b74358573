"""Cut every seed of one grid cell at every layer: per-run layer profiles, the cell's CKA matrices and its
reparametrisation check."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from threadpoolctl import threadpool_limits

from aedissect.nets import probes

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
