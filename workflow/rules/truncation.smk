# Layer truncation (issue 3): cut every trained network at every layer and measure what each cut holds.
# One job per grid cell (all seeds): torch starts once, and the cross-seed CKA sees every seed of the cell.


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
    benchmark:
        f"results/benchmarks/truncate/{CELL}.tsv"
    params:
        runs=get_cell_runs,
        options=get_truncation_options,
        device=TORCH_DEVICE,
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


rule figure_layer_profile:
    input:
        "results/tables/layer_profiles.csv",
    output:
        pdf="results/figures/layer_profile_{dataset}_{part}.pdf",
        png=report(
            "results/figures/layer_profile_{dataset}_{part}.png",
            caption="../report/layer_profile.rst",
            category="Truncation",
            subcategory="{dataset}",
            labels={"figure": "layer profile", "metrics": "{part}"},
        ),
    log:
        "results/logs/figures/layer_profile_{dataset}_{part}.log",
    params:
        figure="plotting_truncation.layer_profile",
        dpi=config["figures"]["dpi"],
    wildcard_constraints:
        part=_alternatives(LAYER_PROFILE_PARTS),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"


rule figure_cka:
    input:
        "results/tables/cka_matrices.csv",
    output:
        pdf="results/figures/cka_{dataset}.pdf",
        png=report(
            "results/figures/cka_{dataset}.png",
            caption="../report/cka.rst",
            category="Truncation",
            subcategory="{dataset}",
        ),
    log:
        "results/logs/figures/cka_{dataset}.log",
    params:
        figure="plotting_truncation.cka_heatmaps",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"


rule figure_encoding_locus:
    input:
        "results/tables/encoding_locus.csv",
    output:
        pdf="results/figures/encoding_locus.pdf",
        png=report(
            "results/figures/encoding_locus.png",
            caption="../report/encoding_locus.rst",
            category="Truncation",
        ),
    log:
        "results/logs/figures/encoding_locus.log",
    params:
        figure="plotting_truncation.encoding_locus",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"
