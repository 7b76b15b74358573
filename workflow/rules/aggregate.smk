rule runs_table:
    output:
        "results/tables/runs.csv",
    log:
        "results/logs/aggregate/runs_table.log",
    params:
        runs=get_all_runs,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/runs_table.py"


rule training_tables:
    input:
        metrics=run_files("train_metrics.json"),
        train_logs=run_files("train_log.csv"),
        reconstructions=get_first_seed_files("reconstructions.csv"),
        data_info=expand("results/data/{dataset}.json", dataset=config["datasets"]),
        references=expand("results/controls/{dataset}/references.csv", dataset=config["datasets"]),
    output:
        metrics="results/tables/train_metrics.csv",
        summary="results/tables/train_summary.csv",
        summary_md="results/tables/train_summary.md",
        curves="results/tables/train_curves.csv",
        reconstructions="results/tables/reconstructions.csv",
    log:
        "results/logs/aggregate/training_tables.log",
    params:
        runs=get_all_runs,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/training_tables.py"
