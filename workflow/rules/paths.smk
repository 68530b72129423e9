# The results layout: every file the workflow writes under config `results`, spelled once here.
# Entries are Snakemake patterns: a rule's output leaves the {wildcards} for Snakemake to fill, a
# helper in common.smk fills them with .format() or expand(). docs/results.md says what each holds.

from types import SimpleNamespace


def _layout(root, **patterns):
    """A namespace of ``<root>/<pattern>`` paths, one attribute per pattern."""
    return SimpleNamespace(**{name: f"{root}/{pattern}" for name, pattern in patterns.items()})


_RESULTS = config["results"]

paths = _layout(
    _RESULTS,
    versions="versions.json",
    # selection
    toydata="toydata/{sample}.root",
    # the b-tagging efficiency map of an era's simulation (weights.corrections.btag.efficiency)
    btag_efficiency="corrections/btag_efficiency_{era}.json",
    skim="preselect/{sample}/{variation}.root",
    cutflow="preselect/{sample}/{variation}.cutflow.json",
    # one job of a sample split by preselect.files_per_job (merged into skim and cutflow)
    skim_part="preselect_parts/{sample}/{part}/{variation}.root",
    cutflow_part="preselect_parts/{sample}/{part}/{variation}.cutflow.json",
    friend="friends/{sample}/{variation}.root",
    # ml
    model="train/fold{fold}/model.pt",
    history="train/fold{fold}/history.json",
    diagnostics="train/diagnostics.json",
    taylor_ranking="train/taylor_ranking.json",
    scores="scores/{sample}/{variation}.root",
    # stats: histograms and workspace
    binning="histograms/binning.json",
    sample_histograms="histograms/samples/{sample}.root",
    histograms="histograms/histograms.root",
    blinding="histograms/blinding.json",
    yields_md="histograms/yields.md",
    yields_tex="histograms/yields.tex",
    workspace="workspace/workspace.json",
    pruned="workspace/pruned.json",
    # stats: exports of the workspace
    datacard="datacard/datacard.txt",
    datacard_shapes="datacard/shapes.root",
    xml="xml",
    # stats: inference (one scan per POI; `2d` names the scan of two POIs)
    fit="fit/fit.json",
    pulls="fit/pulls.json",
    ranking_chunk="fit/ranking/chunk_{chunk}.json",
    ranking="fit/ranking.json",
    scan_chunk="fit/scan/{scan}/chunk_{chunk}.json",
    scan="fit/scan_{scan}.json",
    scan2d="fit/scan2d.json",
    significance="fit/significance.json",
    limits="fit/limits.json",
    # stats: goodness of fit of the input variables
    gof_chunk="gof/chunk_{chunk}.json",
    gof="gof/gof.json",
)

#: Figures and tables of the report; a figure is a path without extension (one file per format).
paths.plots = _layout(
    f"{_RESULTS}/plots",
    cutflow="inputs/cutflow",
    cutflow_md="inputs/cutflow.md",
    cutflow_tex="inputs/cutflow.tex",
    features="inputs/features",
    history="training/history_fold{fold}",
    confusion_efficiency="training/confusion_efficiency",
    confusion_purity="training/confusion_purity",
    roc="training/roc",
    scores="training/scores_{name}",
    taylor_first_order="training/taylor_first_order",
    taylor_ranking="training/taylor_{name}",
    versions="provenance/versions.tsv",
    config="provenance/config.yaml",
    templates="templates",
    stacks="fit/stacks",
    yields_md="fit/yields.md",
    yields_tex="fit/yields.tex",
    pulls="fit/pulls",
    impacts="fit/impacts",
    correlation="fit/correlation",
    scan="fit/scan_{scan}",
    contour="fit/contour",
    limits="fit/limits",
    gof_matrix="gof/p_values",
    gof_histogram="gof/p_value_histogram",
    gof_distributions="gof/distributions",
)

#: One log per rule, named after the rule (a `use rule ... with` variant shares its parent's).
paths.logs = _layout(
    f"{_RESULTS}/logs",
    versions="versions.log",
    toydata_sample="toydata/{sample}.log",
    btag_efficiency="corrections/btag_efficiency_{era}.log",
    preselect_sample="preselect/{sample}.log",
    preselect_part="preselect/{sample}.part{part}.log",
    preselect_merge="preselect/{sample}.merge.log",
    friends_sample="friends/{sample}.log",
    train_fold="train/fold{fold}.log",
    train_diagnostics="train/diagnostics.log",
    inject_sample="scores/{sample}.log",
    histogram_binning="histograms/binning.log",
    histograms_sample="histograms/{sample}.log",
    histograms_merge="histograms/merge.log",
    workspace_build="workspace/workspace.log",
    datacard_export="datacard/datacard.log",
    xml_export="xml/xml.log",
    inference_fit="fit/fit.log",
    inference_pulls="fit/pulls.log",
    ranking_chunk="fit/ranking/chunk_{chunk}.log",
    ranking_gather="fit/ranking.log",
    scan_chunk="fit/scan/{scan}/chunk_{chunk}.log",
    scan_gather="fit/scan_{scan}.log",
    scan2d_gather="fit/scan2d.log",
    inference_significance="fit/significance.log",
    inference_limits="fit/limits.log",
    gof_chunk="gof/chunk_{chunk}.log",
    gof_gather="gof/gof.log",
    plot_cutflow="plots/cutflow.log",
    plot_features="plots/features.log",
    plot_history="plots/history_fold{fold}.log",
    plot_diagnostics="plots/diagnostics.log",
    plot_taylor="plots/taylor.log",
    report_provenance="plots/provenance.log",
    plot_templates="plots/templates.log",
    plot_stacks="plots/stacks.log",
    plot_fit_summary="plots/fit_summary.log",
    plot_scan="plots/scan_{scan}.log",
    plot_contour="plots/contour.log",
    plot_limits="plots/limits.log",
    plot_gof="plots/gof.log",
    plot_gof_distributions="plots/gof_distributions.log",
)
