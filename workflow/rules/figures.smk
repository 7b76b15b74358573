rule figure_training_curves:
    input:
        "results/tables/train_curves.csv",
    output:
        pdf="results/figures/training_curves.pdf",
        png=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        "results/logs/figures/training_curves.log",
    params:
        figure="training_curves",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"


rule figure_reconstruction_error:
    input:
        "results/tables/train_metrics.csv",
    output:
        pdf="results/figures/reconstruction_error.pdf",
        png=report(
            "results/figures/reconstruction_error.png",
            caption="../report/reconstruction_error.rst",
            category="Training",
        ),
    log:
        "results/logs/figures/reconstruction_error.log",
    params:
        figure="reconstruction_error",
        dpi=config["figures"]["dpi"],
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"


rule figure_reconstructions:
    input:
        "results/tables/reconstructions.csv",
    output:
        pdf="results/figures/reconstructions_{dataset}.pdf",
        png=report(
            "results/figures/reconstructions_{dataset}.png",
            caption="../report/reconstructions.rst",
            category="Training",
            subcategory="{dataset}",
        ),
    log:
        "results/logs/figures/reconstructions_{dataset}.log",
    params:
        figure="reconstruction_grid",
        dpi=config["figures"]["dpi"],
        options={"n_examples": config["figures"]["n_examples"]},
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figure.py"
