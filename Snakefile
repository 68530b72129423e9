# H->tautau machine-learning analysis: NanoAOD (toy or real) to final results.
# Rules live in workflow/rules/, one file per package of `analysis` whose modules they run;
# rule files hold rules only, their helper functions are in common.smk.

from snakemake.utils import min_version

min_version("9.0")


# the defaults of every key; a user's --configfile or --config is layered on top
configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# core: config and samples validated against workflow/schemas/ before any job, sample lists and
# the rules' helpers; the results layout (every output and log path); the software versions
include: "workflow/rules/common.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/provenance.smk"
# selection: toy NanoAOD, preselection into skims, friend trees with weights and folds
include: "workflow/rules/selection.smk"
# ml: classifier training per fold, its diagnostics, scores of every skim
include: "workflow/rules/ml.smk"
# stats: histograms, the pyhf workspace, fit, pulls, ranking, scans, significance, limits
include: "workflow/rules/stats.smk"
# plots: figures, tables and the report's provenance
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
