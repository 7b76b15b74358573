# Controls (docs/methods.md, "Controls"): every trained model against the closed-form optimum that bounds it
# (PCA-z for an AE, pPCA for a Gaussian VAE), one job per data set; the references also feed the training tables.
# A diverged run is recorded, not fatal: the jobs read model.pt directly, not the cells' training checks.


rule controls:
    input:
        data="results/data/{dataset}.pt",
        models=get_dataset_models,
    output:
        checks="results/controls/{dataset}/checks.csv",
        references="results/controls/{dataset}/references.csv",
    log:
        "results/logs/controls/{dataset}.log",
    params:
        runs=get_dataset_runs,
    threads: TORCH_THREADS
    resources:
        mem_mb=TORCH_RESOURCES["mem_mb"],
    conda:
        TORCH_ENV
    script:
        "../scripts/controls.py"


rule controls_table:
    input:
        checks=expand("results/controls/{dataset}/checks.csv", dataset=config["datasets"]),
    output:
        "results/tables/controls.csv",
    log:
        "results/logs/aggregate/controls_table.log",
    params:
        runs=get_all_runs,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/controls_table.py"
