"""Training tables: per-run metrics, the summary over seeds, learning curves and example reconstructions."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from aedissect import io
from aedissect.analysis import aggregate

runs = snakemake.params.runs
first_runs = [run for run in runs if run["seed"] == runs[0]["seed"]]
image_shapes = {}
for path in snakemake.input.data_info:
    info = io.read_json(path)
    image_shapes[info["dataset"]] = info["image_shape"]

metrics = aggregate.train_metrics_table(runs, snakemake.input.metrics, snakemake.input.references)
summary = aggregate.train_summary(metrics)
io.write_csv(metrics, snakemake.output.metrics)
io.write_csv(summary, snakemake.output.summary)
io.write_text(aggregate.summary_markdown(summary), snakemake.output.summary_md)
io.write_csv(aggregate.curves_table(runs, snakemake.input.train_logs, metrics), snakemake.output.curves)
recon = aggregate.reconstructions_table(first_runs, snakemake.input.reconstructions, image_shapes)
io.write_csv(recon, snakemake.output.reconstructions)
