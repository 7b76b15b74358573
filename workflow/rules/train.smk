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
    benchmark:
        f"results/benchmarks/train/{CELL}.tsv"
    params:
        runs=get_cell_runs,
        device=config["training"]["device"],
        n_examples=RECORDED_EXAMPLES,
    threads: config["training"]["threads"]
    resources:
        mem_mb=2000,
        gpu=TORCH_GPUS,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"
