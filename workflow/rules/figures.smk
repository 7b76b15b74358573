# Figures beyond the paper's (test error and training curves are paper figures 1 and 2, paper.smk), each drawn from
# one table by workflow/scripts/figure.py; one rule per entry, named figure_<name>. Per figure: the file stem under
# results/figures/ (its wildcards are passed to the drawing function), the table, the drawing function (a function of
# aedissect.analysis.plotting, or "module.function" of aedissect.analysis), the caption in workflow/report/, the
# report category, subcategory and labels, extra params and wildcard constraints.
FIGURES = {
    "reconstructions": {
        "stem": "reconstructions_{dataset}_{kind}",
        "table": "results/tables/reconstructions.csv",
        "draw": "reconstruction_grid",
        "caption": "reconstructions.rst",
        "category": "Training",
        "subcategory": "{dataset}",
        "params": {"options": {"n_examples": config["figures"]["n_examples"]}},
    },
    "layer_profile": {
        "stem": "layer_profile_{dataset}_{part}",
        "table": "results/tables/layer_profiles.csv",
        "draw": "plotting_truncation.layer_profile",
        "caption": "layer_profile.rst",
        "category": "Truncation",
        "subcategory": "{dataset}",
        "labels": {"figure": "layer profile", "metrics": "{part}"},
        "constraints": {"part": _alternatives(LAYER_PROFILE_PARTS)},
    },
    "cka": {
        "stem": "cka_{dataset}",
        "table": "results/tables/cka_matrices.csv",
        "draw": "plotting_truncation.cka_heatmaps",
        "caption": "cka.rst",
        "category": "Truncation",
        "subcategory": "{dataset}",
    },
    "encoding_locus": {
        "stem": "encoding_locus",
        "table": "results/tables/encoding_locus.csv",
        "draw": "plotting_truncation.encoding_locus",
        "caption": "encoding_locus.rst",
        "category": "Truncation",
    },
    # the stitching penalty against the cut, same-architecture seed pairs (the swap matrix, paper figure 7, is the
    # bottleneck across architectures)
    "stitching_cuts": {
        "stem": "stitching_cuts",
        "table": "results/tables/stitching.csv",
        "draw": "plotting_interventions.stitching_by_cut",
        "caption": "stitching_cuts.rst",
        "category": "Interventions",
        "labels": {"figure": "stitching per cut"},
    },
}


for _name, _fig in FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            _fig["table"],
        output:
            pdf=f"results/figures/{_fig['stem']}.pdf",
            png=report(
                f"results/figures/{_fig['stem']}.png",
                caption=f"../report/{_fig['caption']}",
                category=_fig["category"],
                subcategory=_fig.get("subcategory"),
                labels=_fig.get("labels"),
            ),
        log:
            f"results/logs/figures/{_fig['stem']}.log",
        params:
            **_fig.get("params", {}),
            figure=_fig["draw"],
            dpi=config["figures"]["dpi"],
        wildcard_constraints:
            **_fig.get("constraints", {}),
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/figure.py"
