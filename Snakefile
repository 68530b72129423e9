# H->tautau machine-learning analysis: NanoAOD (toy or real) to final results.
# Stages live in workflow/rules/, their logic in the `analysis` package.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# config and samples are validated against workflow/schemas/ in common.smk, before any job


include: "workflow/rules/common.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/toydata.smk"
include: "workflow/rules/preselect.smk"
include: "workflow/rules/friends.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/histograms.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/plots.smk"


# with an external workspace, `snakemake` runs the inference on it alone
rule all:
    input:
        (
            [rules.inference.input, rules.plots_fit.input]
            if EXTERNAL
            else [
                rules.friends.input,
                rules.train.input,
                rules.inject.input,
                rules.histograms.input,
                rules.workspace.input,
                rules.inference.input,
                rules.plots.input,
                rules.plots_fit.input,
            ]
        ),
    default_target: True
