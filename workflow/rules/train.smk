rule train:
    input:
        data="results/data/{dataset}.pt",
        info="results/data/{dataset}.json",
    output:
        model=cell_outputs("model.pt"),
        config=cell_outputs("config.json"),
        train_log=cell_outputs("train_log.csv"),
        metrics=cell_outputs("train_metrics.json"),
        reconstructions=cell_outputs("reconstructions.csv"),
        provenance=cell_outputs("provenance.json"),
    log:
        f"results/logs/train/{CELL}.log",
    params:
        runs=get_cell_runs,
        device=TORCH_DEVICE,
        n_examples=RECORDED_EXAMPLES,
    priority: 1
    threads: TORCH_THREADS
    resources:
        **TORCH_RESOURCES,
    conda:
        TORCH_ENV
    script:
        "../scripts/train.py"


# A diverged seed does not fail its training job (that would delete the cell's other seeds); this check does,
# naming the run. Everything that loads the cell's models waits for it; the training tables do not, so that
# with --keep-going they mark the run as diverged. It only reads a few JSON files: never worth a cluster job.
localrules:
    check_training,


rule check_training:
    input:
        metrics=cell_outputs("train_metrics.json"),
    output:
        f"results/runs/{CELL}/training_check.json",
    log:
        f"results/logs/check_training/{CELL}.log",
    priority: 1  # in the chain train -> check -> truncate, all before the interventions (truncation.smk)
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/check_training.py"
