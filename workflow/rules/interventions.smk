# Interventions (docs/methods.md, "Interventions"): freezing at init, re-initialisation, retraining one layer and
# stitching on the cells of interventions.cells; tables, and the swap matrix from the stitching table (their
# figures are paper figures, paper.smk).


rule freeze:
    input:
        data="results/data/{dataset}.pt",
    output:
        directory(f"results/freeze/{CELL}"),
    log:
        f"results/logs/freeze/{CELL}.log",
    params:
        runs=get_cell_runs,
        specs=get_freeze_specs,
        device=TORCH_DEVICE,
    threads: TORCH_THREADS
    resources:
        **TORCH_RESOURCES,
    conda:
        TORCH_ENV
    script:
        "../scripts/freeze.py"


rule criticality:
    input:
        data="results/data/{dataset}.pt",
        models=get_group_models,
        trained=get_group_checks,
    output:
        f"results/interventions/criticality/{GROUP}.csv",
    log:
        f"results/logs/criticality/{GROUP}.log",
    params:
        runs=get_group_runs,
        options=config["interventions"]["criticality"],
        device=TORCH_DEVICE,
    threads: TORCH_THREADS
    resources:
        **TORCH_RESOURCES,
    conda:
        TORCH_ENV
    script:
        "../scripts/intervention_group.py"


# the same job with the other intervention: the rule's name picks it (workflow/scripts/intervention_group.py)
use rule criticality as stitching with:
    output:
        f"results/interventions/stitching/{GROUP}.csv",
    log:
        f"results/logs/stitching/{GROUP}.log",
    params:
        options=config["interventions"]["stitching"],


rule intervention_tables:
    input:
        freeze=get_freeze_dirs,
        normal_metrics=get_freeze_normal_metrics,
        criticality=expand("results/interventions/criticality/{group}.csv", group=GROUPS),
        stitching=expand("results/interventions/stitching/{group}.csv", group=GROUPS),
    output:
        freeze="results/tables/freeze.csv",
        freeze_summary="results/tables/freeze_summary.csv",
        share="results/tables/encoder_share.csv",
        share_summary="results/tables/encoder_share_summary.csv",
        share_vs_parameters="results/tables/share_vs_parameters.csv",
        criticality="results/tables/layer_criticality.csv",
        criticality_summary="results/tables/layer_criticality_summary.csv",
        stitching="results/tables/stitching.csv",
        stitching_summary="results/tables/stitching_summary.csv",
    log:
        "results/logs/aggregate/intervention_tables.log",
    params:
        runs=get_all_runs,
        freeze_runs=get_freeze_runs,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/intervention_tables.py"


rule swap:
    input:
        stitching="results/tables/stitching.csv",
    output:
        swap="results/tables/swap.csv",
    log:
        "results/logs/aggregate/swap.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/swap.py"
