import sys
from pathlib import Path

from snakemake.utils import update_config

# Snakemake itself may run outside the venv (with --sdm conda), where the package is not installed;
# the jobs' scripts find it through the workflow/scripts/aedissect link. Snakemake's process may then hold nothing
# but Snakemake: the rule files import only modules of the package that need no more than the standard library,
# PyYAML, jsonschema and psutil (tests/test_envs.py parses the workflow in such a venv).
sys.path.insert(0, str(Path(workflow.basedir, "workflow")))

from aedissect import config as study  # noqa: E402
from aedissect import datasets, plans  # noqa: E402

# Snakemake reads config files with YAML 1.1's float pattern, to which 1e-2 is a string: the study is read again from
# the files Snakemake read, in its order, as `aedissect check` reads it (aedissect.config.StudyLoader); then the values
# given with --config, typed as a config file would type them (merged last, as Snakemake merged them).
_config_files = workflow.configfiles
if workflow.config_settings.replace_workflow_config and workflow.config_settings.overwrite_config:
    _config_files = workflow.overwrite_configfiles  # Snakemake dropped the configfile: directive's file
_study_config = {}
for _config_file in _config_files:
    update_config(_study_config, study.load_yaml(_config_file))
update_config(_study_config, study.typed_overrides(workflow.config_settings.config))
try:
    study.validate(_study_config, workflow.source_path("../schemas/config.schema.yaml"))
except study.ConfigError as err:
    raise WorkflowError(str(err)) from None
# Snakemake compares params by their text: with every mapping sorted, neither the key order of a config
# file nor whether a default was written out can rerun anything.
config.clear()
config.update(study.canonical(_study_config))

from aedissect.io import clear_stale_locks, record_lock_owner  # noqa: E402
from aedissect.scheduling import coalesce_wakeups  # noqa: E402

if workflow.is_main_process:
    # Snakemake's scheduler arms one more wake-up timer per finished job (aedissect/scheduling.py): on the
    # default study its own process took a third of a core from the jobs.
    coalesce_wakeups()
    # A killed run leaves Snakemake's lock behind; when its owner is gone, rerunning the same command resumes.
    stale = clear_stale_locks(".snakemake/locks")
    if stale:
        logger.warning(stale)


onstart:
    record_lock_owner(".snakemake/locks")
    check_data_available()


RUNS = study.grid(config)
RUN_BY_ID = {run["run_id"]: run for run in RUNS}
CELLS = plans.cells(RUNS)
SEEDS = config["seeds"]
# test examples each training records; figures.n_examples picks how many of them to draw, so that
# changing it redraws the figure and retrains nothing
RECORDED_EXAMPLES = 16
# What every torch job (envs/torch.yaml) names instead of repeating it: its env, the device it trains on, its
# threads, and its memory and `gpu` resources (a study with training.device cuda asks the scheduler, SLURM, for one
# GPU per job). The controls job does linear algebra on the CPU: it asks for the memory only.
TORCH_ENV = "../../envs/torch.yaml"
TORCH_DEVICE = config["training"]["device"]
TORCH_THREADS = config["training"]["threads"]
TORCH_RESOURCES = {"mem_mb": 2000, "gpu": 1 if TORCH_DEVICE == "cuda" else 0}
# logging.tensorboard is in no rule's params (nor resources): Snakemake reruns a job whose params changed, and event
# files change no result. The scripts of the training rules read it from snakemake.config (training.tensorboard_folder).
CELL = "{dataset}/{kind}/{arch}/z{z}/{act}"


def _alternatives(values):
    return "|".join(map(str, values))


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    kind=_alternatives(config["model_kinds"]),
    arch=_alternatives(config["architectures"]),
    z=_alternatives(config["bottlenecks"]),
    act=_alternatives(study.all_activations(config)),
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


def check_data_available():
    """Missing or corrupt data files stop the run before any job (a dry run, which reads nothing, does not check).

    CIFAR-10's files are checked by MD5 in their prepare_data job only: the MD5s are torchvision's."""
    for dataset in config["datasets"]:
        if not Path(f"results/data/{dataset}.pt").exists():  # prepared already: the raw files are not read again
            try:
                datasets.check_files(dataset, config["data"])
            except datasets.DataError as err:
                raise WorkflowError(str(err)) from None


def get_data_options(wildcards):
    """Only the data keys this data set depends on, so that changing another's reruns nothing here."""
    return datasets.data_options(wildcards.dataset, config["data"])


def get_all_runs(wildcards):
    return RUNS


def get_first_seed_files(name):
    """One file per grid cell, from the cell's first seed (example figures show one seed)."""
    return [f"results/runs/{cell}/s{SEEDS[0]}/{name}" for cell in CELLS]


def get_final_outputs(wildcards):
    tables = ["runs", "train_metrics", "train_summary", "train_curves", "reconstructions", "controls"]
    figures = [f"reconstructions_{dataset}_{kind}" for dataset in config["datasets"] for kind in config["model_kinds"]]
    return (
        [f"results/tables/{name}.csv" for name in tables]
        + ["results/tables/train_summary.md"]
        + [f"results/runs/{cell}/training_check.json" for cell in CELLS]
        + [f"results/figures/{name}.{ext}" for name in figures for ext in ("pdf", "png")]
        + get_paper_outputs(wildcards)
        + get_intervention_outputs(wildcards)
        + get_truncation_outputs(wildcards)
    )


# ---- controls (workflow/rules/controls.smk) ----
def get_dataset_runs(wildcards):
    return plans.dataset_runs(RUNS, wildcards.dataset)


def get_dataset_models(wildcards):
    return [f"results/runs/{run['run_id']}/model.pt" for run in get_dataset_runs(wildcards)]


# ---- the paper (workflow/rules/paper.smk) ----
from aedissect.analysis import paper_outline, studies  # noqa: E402

PAPER_FRONT_PAGE = "results/paper/report_front_page.rst"


def get_paper_findings_inputs(wildcards):
    """The tables findings.md is computed from: training always, the others when their rules exist."""
    inputs = {
        "runs": "results/tables/runs.csv",
        "train_metrics": "results/tables/train_metrics.csv",
        "intro": workflow.source_path("../report/workflow.rst"),
    }
    for key, (path, producer) in paper_outline.FINDINGS_INPUTS.items():
        if rules.has(producer):
            inputs[key] = path
    return inputs


# the findings read the verdict rules' settings only: where studies_summary looks for studies reruns no finding
FINDINGS_OPTIONS = {key: value for key, value in config["paper"].items() if key != "studies_folder"}


def get_studies_verdicts(wildcards):
    """Every study's verdicts.csv that exists: the working directory's own, then those under paper.studies_folder."""
    try:
        return [str(path) for path in studies.find_verdicts(config["paper"]["studies_folder"])]
    except studies.StudiesError as err:
        raise WorkflowError(str(err)) from None


def get_paper_outputs(wildcards):
    """Everything `snakemake paper` builds: numbered figures (PDF, PNG, CSV), tables (CSV, MD, TeX), findings."""
    figures = [paper_outline.figure_stem(n, fig) for n, fig in paper_outline.numbered(rules.has)]
    tables = [paper_outline.table_stem(n, name) for n, name, *_ in paper_outline.tables(rules.has)]
    return (
        [f"results/paper/{stem}.{ext}" for stem in figures for ext in ("pdf", "png", "csv")]
        + [f"results/paper/{stem}.{ext}" for stem in tables for ext in ("csv", "md", "tex")]
        + ["results/paper/findings.md", PAPER_FRONT_PAGE]
    )


# ---- interventions (workflow/rules/interventions.smk) ----
GROUP = "{dataset}/{kind}/z{z}/{act}"  # stitching and criticality: every model of one group in one job
FREEZE_RUNS = plans.intervention_runs(config, RUNS)  # interventions.cells: the runs every intervention covers
FREEZE_CELLS = plans.cells(FREEZE_RUNS)
GROUPS = plans.groups(FREEZE_RUNS)
try:
    FREEZE_SPECS = plans.freeze_specs_by_run(config, RUNS)
except study.ConfigError as err:
    raise WorkflowError(str(err)) from None


def get_freeze_specs(wildcards):
    return {run["run_id"]: FREEZE_SPECS[run["run_id"]] for run in get_cell_runs(wildcards)}


def get_freeze_runs(wildcards):
    return FREEZE_RUNS


def get_freeze_dirs(wildcards):
    return [f"results/freeze/{cell}" for cell in FREEZE_CELLS]


def get_freeze_normal_metrics(wildcards):
    return [f"results/runs/{run['run_id']}/train_metrics.json" for run in FREEZE_RUNS]


def get_group_runs(wildcards):
    return plans.group_runs(FREEZE_RUNS, GROUP.format(**dict(wildcards.items())))


def get_group_models(wildcards):
    return [f"results/runs/{run['run_id']}/model.pt" for run in get_group_runs(wildcards)]


def get_group_checks(wildcards):
    return [f"results/runs/{cell}/training_check.json" for cell in plans.cells(get_group_runs(wildcards))]


def get_intervention_outputs(wildcards):
    tables = ["freeze", "freeze_summary", "encoder_share", "encoder_share_summary", "share_vs_parameters"]
    tables += ["layer_criticality", "layer_criticality_summary", "stitching", "stitching_summary", "swap"]
    figures = ["stitching_cuts"]
    return [f"results/tables/{name}.csv" for name in tables] + [
        f"results/figures/{name}.{ext}" for name in figures for ext in ("pdf", "png")
    ]


# ---- truncation (workflow/rules/truncation.smk) ----
TRUNCATION_RUNS = plans.truncation_runs(config, RUNS)
TRUNCATION_CELLS = plans.cells(TRUNCATION_RUNS)
TRUNCATION_DATASETS = plans.datasets(TRUNCATION_RUNS)
# the parts of each data set's layer profile figure: the keys of plotting_truncation.PROFILE_PARTS (not imported
# here: matplotlib is no business of the parser)
LAYER_PROFILE_PARTS = ["content", "dimension", "similarity"]


# the phantoms (the phantoms job): linear ones at the bottlenecks R2 is measured at (every bottleneck without freezing
# runs); the linear VAE phantom only where the VAE's likelihood is Gaussian with a fixed sigma (pPCA is its optimum)
PHANTOM_BOTTLENECKS = sorted({run["bottleneck"] for run in FREEZE_RUNS} or set(config["bottlenecks"]))
PHANTOM_SIGMA = config["vae"].get("sigma") if config["vae"]["likelihood"] == "gaussian" else None


def get_phantom_data(wildcards):
    return [f"results/data/{dataset}.pt" for dataset in TRUNCATION_DATASETS]


def get_phantom_options(wildcards):
    """The probe settings, with every profiled data set's factor columns."""
    columns = {dataset: datasets.factor_columns(dataset, config["data"]) for dataset in TRUNCATION_DATASETS}
    return plans.truncation_options(config) | {"factor_columns": columns}


def get_truncation_options(wildcards):
    """The probe settings, and the data set's factor columns (a mean factor R² weighs every factor once)."""
    factor_columns = datasets.factor_columns(wildcards.dataset, config["data"])
    return plans.truncation_options(config) | {"factor_columns": factor_columns}


def get_truncation_runs(wildcards):
    return TRUNCATION_RUNS


def get_truncation_files(name):
    """One file per profiled run, in grid order."""
    return [f"results/runs/{run['run_id']}/{name}" for run in TRUNCATION_RUNS]


def get_truncation_cell_files(name):
    """One file per profiled grid cell."""
    return [f"results/runs/{cell}/{name}" for cell in TRUNCATION_CELLS]


def get_truncation_outputs(wildcards):
    if not TRUNCATION_RUNS:
        return []
    tables = ["layer_profiles", "layer_profile_summary", "encoding_locus", "encoding_locus_summary", "cka_matrices"]
    tables += ["reparam", "reparam_summary", "phantom_profiles", "phantom_work", "phantom_list"]
    figures = [f"layer_profile_{dataset}_{part}" for dataset in TRUNCATION_DATASETS for part in LAYER_PROFILE_PARTS]
    figures += [f"cka_{dataset}" for dataset in TRUNCATION_DATASETS] + ["encoding_locus"]
    return [f"results/tables/{name}.csv" for name in tables] + [
        f"results/figures/{name}.{ext}" for name in figures for ext in ("pdf", "png")
    ]
