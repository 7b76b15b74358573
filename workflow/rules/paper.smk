# The paper: `snakemake --cores N paper` builds results/paper/ from the result tables only.
# Figures are numbered in paper order (workflow/aedissect/analysis/paper_outline.py); each is drawn from one table,
# a copy of which is written beside it. Figure rules depend on the table and the figure settings only,
# so changing a figure setting redraws figures and reruns nothing upstream.
# Include this file after every rule file whose tables it reads (a figure whose producer rule is
# missing is left out).


rule paper_findings:
    input:
        unpack(get_paper_findings_inputs),
    output:
        phantoms="results/paper/phantoms.csv",
        per_run="results/paper/findings_runs.csv",
        summary="results/paper/findings.csv",
        verdicts="results/paper/verdicts.csv",
        sensitivity="results/paper/verdict_sensitivity.csv",
        factor_locus="results/paper/factor_locus.csv",
        sensitivity_html=report(
            "results/paper/verdict_sensitivity.html",
            caption="../report/verdict_sensitivity.rst",
            category="Findings",
            labels={"item": "verdict sensitivity"},
        ),
        markdown="results/paper/findings.md",
        html=report(
            "results/paper/findings.html",
            caption="../report/paper_findings.rst",
            category="Findings",
            labels={"item": "findings"},
        ),
        front_page=PAPER_FRONT_PAGE,
    log:
        "results/logs/paper/findings.log",
    params:
        options=FINDINGS_OPTIONS,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/paper_findings.py"


for _number, _fig in paper_outline.numbered(rules.has):

    rule:
        name:
            f"paper_{paper_outline.figure_stem(_number, _fig)}"
        input:
            **_fig.tables,
            table=_fig.table,
        output:
            pdf=f"results/paper/{paper_outline.figure_stem(_number, _fig)}.pdf",
            png=report(
                f"results/paper/{paper_outline.figure_stem(_number, _fig)}.png",
                caption=f"../report/{_fig.caption}",
                category=_fig.category,
                subcategory="paper figures",
                labels={"figure": f"Figure {_number}", "name": _fig.name},
            ),
            csv=f"results/paper/{paper_outline.figure_stem(_number, _fig)}.csv",
        log:
            f"results/logs/paper/{paper_outline.figure_stem(_number, _fig)}.log",
        params:
            figure={
                "module": _fig.module,
                "function": _fig.function,
                "kwargs": _fig.kwargs,
                "tables": list(_fig.tables),
            },
            dpi=config["figures"]["dpi"],
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/paper_figure.py"


for _number, _name, _table, _producer, _builder in paper_outline.tables(rules.has):

    rule:
        name:
            f"paper_{paper_outline.table_stem(_number, _name)}"
        input:
            table=_table,
        output:
            csv=f"results/paper/{paper_outline.table_stem(_number, _name)}.csv",
            md=f"results/paper/{paper_outline.table_stem(_number, _name)}.md",
            tex=f"results/paper/{paper_outline.table_stem(_number, _name)}.tex",
            html=report(
                f"results/paper/{paper_outline.table_stem(_number, _name)}.html",
                caption="../report/paper_table.rst",
                category=paper_outline.TABLE_CATEGORIES[_name],
                subcategory="paper tables",
                labels={"table": f"Table {_number}", "name": _name},
            ),
        log:
            f"results/logs/paper/{paper_outline.table_stem(_number, _name)}.log",
        params:
            table=_name,
            builder=_builder,
            caption=paper_outline.TABLE_CAPTIONS[_name],
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/paper_table.py"


rule paper:
    input:
        get_paper_outputs,


# Not part of `paper`: every study's verdicts in one table, from the studies that have run (docs/paper.md).
rule studies_summary:
    input:
        verdicts=get_studies_verdicts,
    output:
        csv="results/paper/studies_verdicts.csv",
        md="results/paper/studies_verdicts.md",
    log:
        "results/logs/paper/studies_summary.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/studies_summary.py"
