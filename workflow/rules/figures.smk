# Training figures beyond the paper's (test error and training curves are paper figures 1 and 2, paper.smk).


rule figure_reconstructions:
    input:
        "results/tables/reconstructions.csv",
    output:
        pdf="results/figures/reconstructions_{dataset}_{kind}.pdf",
        png=report(
            "results/figures/reconstructions_{dataset}_{kind}.png",
            caption="../report/reconstructions.rst",
            category="Training",
            subcategory="{dataset}",
        ),
    log:
        "results/logs/figures/reconstructions_{dataset}_{kind}.log",
    params:
        figure="reconstruction_grid",
        dpi=config["figures"]["dpi"],
        options={"n_examples": config["figures"]["n_examples"]},
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"
