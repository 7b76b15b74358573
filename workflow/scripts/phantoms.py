"""Build the phantoms of every profiled data set (networks whose answer is known by construction), profile each one's
layers as the truncate jobs do, and compute the linear phantom's work shares in closed form."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from aedissect.io import log_resources_at_exit

log_resources_at_exit()  # wall, CPU and peak memory of the job, last line of its log

import scipy.linalg  # noqa: F401  scipy's own OpenBLAS, limited below with numpy's (see truncate.py)
import torch
from threadpoolctl import threadpool_limits

from aedissect import io
from aedissect.nets import phantoms
from aedissect.nets.training import setup_torch

params = snakemake.params
with threadpool_limits(limits=snakemake.threads):
    device = setup_torch(snakemake.threads, params.device)
    torch.manual_seed(params.options["seed"])
    profiles, work, listing = phantoms.phantom_job(
        dict(zip(params.datasets, snakemake.input.data, strict=True)),
        params.options | {"device": str(device)},
        params.bottlenecks,
        params.kinds,
        params.sigma,
        params.seeds,
    )
io.write_csv(profiles, snakemake.output.profiles)
io.write_csv(work, snakemake.output.work)
io.write_csv(listing, snakemake.output.listing)
