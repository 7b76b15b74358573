import sys
from pathlib import Path

# Snakemake itself may run outside the venv (with --sdm conda), where the package is not installed;
# the jobs' scripts find it through the workflow/scripts/aedissect link.
sys.path.insert(0, str(Path(workflow.basedir, "workflow")))

from aedissect import config as study  # noqa: E402

try:
    study.validate(config, workflow.source_path("../schemas/config.schema.yaml"))
except study.ConfigError as err:
    raise WorkflowError(str(err)) from None

RUNS = study.grid(config)
RUN_BY_ID = {run["run_id"]: run for run in RUNS}
CELLS = list(dict.fromkeys(rid.rsplit("/", 1)[0] for rid in RUN_BY_ID))
SEEDS = config["seeds"]
CELL = "{dataset}/{kind}/{arch}/z{z}/{act}"


def _alternatives(values):
    return "|".join(map(str, values))


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    kind=_alternatives(config["model_kinds"]),
    arch=_alternatives(config["architectures"]),
    z=_alternatives(config["bottlenecks"]),
    act=_alternatives(config["activations"]),
    seed=_alternatives(SEEDS),


def cell_outputs(name):
    """One file per seed of a training cell, the cell's wildcards left open."""
    return expand("results/runs/{{dataset}}/{{kind}}/{{arch}}/z{{z}}/{{act}}/s{seed}/{name}", seed=SEEDS, name=name)


def run_files(name):
    """One file per run of the study, in grid order."""
    return [f"results/runs/{rid}/{name}" for rid in RUN_BY_ID]


def get_cell_runs(wildcards):
    cell = study.cell_id(wildcards.dataset, wildcards.kind, wildcards.arch, int(wildcards.z), wildcards.act)
    return [RUN_BY_ID[f"{cell}/s{seed}"] for seed in SEEDS]


DATA_KEYS = {
    "digits": ("test_fraction", "split_seed", "max_train_samples"),
    "factors": ("test_fraction", "factors", "max_train_samples"),
}


def get_data_options(wildcards):
    """Only the data keys this data set depends on, so that changing another's reruns nothing here."""
    keys = DATA_KEYS.get(wildcards.dataset, ("root", "download", "max_train_samples"))
    return {key: config["data"][key] for key in keys}


def get_all_runs(wildcards):
    return RUNS


def get_first_seed_files(name):
    """One file per grid cell, from the cell's first seed (example figures show one seed)."""
    return [f"results/runs/{cell}/s{SEEDS[0]}/{name}" for cell in CELLS]


def get_final_outputs(wildcards):
    tables = ["runs", "train_metrics", "train_summary", "train_curves", "reconstructions"]
    figures = ["training_curves", "reconstruction_error"]
    figures += [f"reconstructions_{dataset}" for dataset in config["datasets"]]
    return (
        [f"results/tables/{name}.csv" for name in tables]
        + ["results/tables/train_summary.md"]
        + [f"results/figures/{name}.{ext}" for name in figures for ext in ("pdf", "png")]
    )
