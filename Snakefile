# aedissect: is the encoder really the part that does the encoding?
# This file only includes the rule files and names the final targets; see README.md.
from snakemake.utils import min_version

min_version("9.0")


# The default study, unless --configfile names another: Snakemake would otherwise merge the two
# and a study's architectures would silently gain the default ones.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/interventions.smk"
include: "workflow/rules/truncation.smk"
include: "workflow/rules/controls.smk"
# the paper last: it reads the tables of every rule file above
include: "workflow/rules/paper.smk"


# The report's front page: the computed findings once `snakemake paper` has run, else the description alone.
report: str(Path(PAPER_FRONT_PAGE).resolve()) if Path(PAPER_FRONT_PAGE).exists() else "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        get_final_outputs,
