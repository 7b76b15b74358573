# Layer truncation (issue 3): cut every trained network at every layer and measure what each cut holds.
# One job per grid cell (all seeds): torch starts once, and the cross-seed CKA sees every seed of the cell.
# Training and truncation go before the interventions (priority 1): the truncation tables and their figures are
# then drawn while the last freeze jobs run, and what is left when the last job ends is the short interventions
# table and the findings (on 2 cores the run ended ~20 s sooner).
# Its figures (layer profiles, CKA, encoding locus) are entries of FIGURES in figures.smk.


rule truncate:
    input:
        data="results/data/{dataset}.pt",
        models=cell_outputs("model.pt"),
        trained=f"results/runs/{CELL}/training_check.json",
    output:
        profiles=cell_outputs("layer_profile.csv"),
        cka=f"results/runs/{CELL}/truncation_cka.csv",
        reparam=f"results/runs/{CELL}/reparam.csv",
    log:
        f"results/logs/truncate/{CELL}.log",
    params:
        runs=get_cell_runs,
        options=get_truncation_options,
        device=TORCH_DEVICE,
    priority: 1
    threads: config["truncation"]["threads"]
    resources:
        **TORCH_RESOURCES,
    conda:
        TORCH_ENV
    script:
        "../scripts/truncate.py"


rule truncation_tables:
    input:
        profiles=get_truncation_files("layer_profile.csv"),
        cka=get_truncation_cell_files("truncation_cka.csv"),
        reparam=get_truncation_cell_files("reparam.csv"),
    output:
        profiles="results/tables/layer_profiles.csv",
        summary="results/tables/layer_profile_summary.csv",
        locus="results/tables/encoding_locus.csv",
        locus_summary="results/tables/encoding_locus_summary.csv",
        cka="results/tables/cka_matrices.csv",
        reparam="results/tables/reparam.csv",
        reparam_summary="results/tables/reparam_summary.csv",
    log:
        "results/logs/aggregate/truncation_tables.log",
    params:
        runs=get_truncation_runs,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/truncation_tables.py"


# Phantoms: networks whose answer is known by construction (aedissect.nets.phantoms), profiled like the trained ones,
# so that paper_findings can check every rule on them before it lets the rule into a verdict.
rule phantoms:
    input:
        data=get_phantom_data,
    output:
        profiles="results/tables/phantom_profiles.csv",
        work="results/tables/phantom_work.csv",
        listing="results/tables/phantom_list.csv",
    log:
        "results/logs/phantoms.log",
    params:
        datasets=TRUNCATION_DATASETS,
        options=get_phantom_options,
        bottlenecks=PHANTOM_BOTTLENECKS,
        kinds=config["model_kinds"],
        sigma=PHANTOM_SIGMA,
        seeds=config["seeds"],
        device=TORCH_DEVICE,
    priority: 1
    threads: config["truncation"]["threads"]
    resources:
        **TORCH_RESOURCES,
    conda:
        TORCH_ENV
    script:
        "../scripts/phantoms.py"
