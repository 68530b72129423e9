# Figures and tables, each registered in the Snakemake report with a caption (workflow/report/).
# Plot rules read stage outputs only and take only plot options as params, so restyling a figure
# (config `plots:`) reruns plot rules and nothing upstream.


rule plot_cutflow:
    """Cutflow of every sample's nominal selection: figure and tables."""
    input:
        [f"{RESULTS}/preselect/{name}/nominal.cutflow.json" for name in SAMPLES],
    output:
        png=figure(f"{PLOTS}/inputs/cutflow", "cutflow", "1. Inputs", "Cutflow"),
        markdown=report(
            f"{PLOTS}/inputs/cutflow.md",
            caption="../report/cutflow_table.rst",
            category="1. Inputs",
            subcategory="Cutflow",
        ),
        latex=f"{PLOTS}/inputs/cutflow.tex",
    params:
        settings=plot_settings(),
        prefix=lambda wildcards, output: figure_prefix(wildcards, output.png),
    log:
        f"{LOGS}/plots/cutflow.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.distributions --settings {params.settings:q} cutflow "
        "--cutflows {input:q} --prefix {params.prefix:q} --markdown {output.markdown:q} "
        "--latex {output.latex:q} 2> {log:q}"


rule plot_features:
    """Input features, data and stacked simulation, per region."""
    input:
        **feature_plot_inputs(),
    output:
        report(
            directory(f"{PLOTS}/inputs/features"),
            patterns=["{name}.png"],
            caption="../report/features.rst",
            category="1. Inputs",
            subcategory="Features",
        ),
    params:
        settings=plot_settings(),
        processes=stacked_processes(),
        features=config["train"]["features"],
        blinding=feature_blinding(),
    log:
        f"{LOGS}/plots/features.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.distributions --settings {params.settings:q} features "
        "--skims {input.skims:q} --friends {input.friends:q} --processes {params.processes:q} "
        "--features {params.features:q} --blinding {params.blinding:q} --output-dir {output:q} "
        "2> {log:q}"


rule plot_history:
    """Training curves of one fold."""
    input:
        f"{RESULTS}/train/fold{{fold}}/history.json",
    output:
        figure(f"{PLOTS}/training/history_fold{{fold}}", "history", "2. Training", "Curves"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    wildcard_constraints:
        fold=r"\d+",
    log:
        f"{LOGS}/plots/history_fold{{fold}}.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.training --settings {params.settings:q} history "
        "--history {input:q} --prefix {params.prefix:q} 2> {log:q}"


rule plot_diagnostics:
    """Confusion matrices, ROC curves and train/test score distributions."""
    input:
        f"{RESULTS}/train/diagnostics.json",
    output:
        figure(f"{PLOTS}/training/confusion_efficiency", "confusion", "2. Training", "Confusion"),
        figure(f"{PLOTS}/training/confusion_purity", "confusion", "2. Training", "Confusion"),
        figure(f"{PLOTS}/training/roc", "roc", "2. Training", "ROC"),
        figures(
            [f"{PLOTS}/training/scores_{name}" for name in CLASSES],
            "scores",
            "2. Training",
            "Scores",
        ),
    params:
        settings=plot_settings(),
        classes=CLASSES,
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/plots/diagnostics.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.training --settings {params.settings:q} diagnostics "
        "--diagnostics {input:q} --classes {params.classes:q} "
        "--output-dir {params.output_dir:q} 2> {log:q}"


rule plot_taylor:
    """Taylor-coefficient feature ranking of the classifier."""
    input:
        f"{RESULTS}/train/taylor_ranking.json",
    output:
        figure(f"{PLOTS}/training/taylor_first_order", "taylor_matrix", "2. Training", "Taylor"),
        figures(
            [f"{PLOTS}/training/taylor_{name}" for name in CLASSES],
            "taylor_ranking",
            "2. Training",
            "Taylor",
        ),
    params:
        settings=plot_settings(),
        classes=CLASSES,
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/plots/taylor.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.training --settings {params.settings:q} taylor "
        "--taylor {input:q} --classes {params.classes:q} --output-dir {params.output_dir:q} "
        "2> {log:q}"


rule report_provenance:
    """Software versions and the configuration of this results directory, for the report."""
    input:
        rules.versions.output,
    output:
        versions=report(
            f"{PLOTS}/provenance/versions.tsv",
            caption="../report/versions.rst",
            category="0. Provenance",
        ),
        config=report(
            f"{PLOTS}/provenance/config.yaml",
            caption="../report/config.rst",
            category="0. Provenance",
        ),
    params:
        config=as_json(config),
    log:
        f"{LOGS}/plots/provenance.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.report --versions {input:q} --config {params.config:q} "
        "--versions-table {output.versions:q} --config-copy {output.config:q} 2> {log:q}"


rule plots:
    """Every figure and table whose inputs this workflow produces today."""
    input:
        rules.plot_cutflow.output,
        rules.plot_features.output,
        expand(rules.plot_history.output, fold=range(config["friends"]["folds"])),
        rules.plot_diagnostics.output,
        rules.plot_taylor.output,
        rules.report_provenance.output,


# ---- statistical model and fits (inputs at the results-contract paths) ----


rule plot_templates:
    """Nominal and up/down templates of every systematic, per channel and process."""
    input:
        f"{RESULTS}/histograms/histograms.root",
    output:
        report(
            directory(f"{PLOTS}/templates"),
            patterns=["{name}.png"],
            caption="../report/templates.rst",
            category="3. Statistical model",
            subcategory="Templates",
        ),
    params:
        settings=plot_settings(),
    threads: 2
    log:
        f"{LOGS}/plots/templates.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} templates "
        "--histograms {input:q} --output-dir {output:q} --workers {threads} 2> {log:q}"


rule plot_stacks:
    """Pre-fit and post-fit stacks of every channel, and the yields tables."""
    input:
        unpack(stack_inputs),
    output:
        stacks=report(
            directory(f"{PLOTS}/fit/stacks"),
            patterns=["{name}.png"],
            caption="../report/stacks.rst",
            category="4. Fit",
            subcategory="Distributions",
        ),
        markdown=report(
            f"{PLOTS}/fit/yields.md",
            caption="../report/yields.rst",
            category="4. Fit",
            subcategory="Yields",
        ),
        latex=f"{PLOTS}/fit/yields.tex",
    params:
        settings=plot_settings(),
        model=inference_settings(),
        binning=lambda wildcards, input: input.get("binning", ""),
    log:
        f"{LOGS}/plots/stacks.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} stacks "
        "--workspace {input.workspace:q} --model-settings {params.model:q} --fit {input.fit:q} "
        "--binning={params.binning:q} "
        "--output-dir {output.stacks:q} --markdown {output.markdown:q} "
        "--latex {output.latex:q} 2> {log:q}"


rule plot_fit_summary:
    """Pulls, impacts ranking and correlation matrix."""
    input:
        fit=f"{FIT}/fit.json",
        pulls=f"{FIT}/pulls.json",
        ranking=f"{FIT}/ranking.json",
    output:
        pulls=figure(f"{PLOTS}/fit/pulls", "pulls", "4. Fit", "Pulls"),
        impacts=figure(f"{PLOTS}/fit/impacts", "impacts", "4. Fit", "Impacts"),
        correlation=figure(f"{PLOTS}/fit/correlation", "correlation", "4. Fit", "Correlations"),
    params:
        settings=plot_settings(),
        pulls=lambda wildcards, output: figure_prefix(wildcards, output.pulls),
        impacts=lambda wildcards, output: figure_prefix(wildcards, output.impacts),
        correlation=lambda wildcards, output: figure_prefix(wildcards, output.correlation),
    log:
        f"{LOGS}/plots/fit_summary.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} summary "
        "--fit {input.fit:q} --pulls-record {input.pulls:q} --ranking {input.ranking:q} "
        "--pulls {params.pulls:q} --impacts {params.impacts:q} "
        "--correlation {params.correlation:q} 2> {log:q}"


rule plot_scan:
    """Profile-likelihood scan of one POI."""
    input:
        f"{FIT}/scan_{{poi}}.json",
    output:
        figure(f"{PLOTS}/fit/scan_{{poi}}", "scan", "4. Fit", "Scans"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        f"{LOGS}/plots/scan_{{poi}}.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} scan --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plot_contour:
    """Two-POI likelihood contour."""
    input:
        f"{FIT}/scan2d.json",
    output:
        figure(f"{PLOTS}/fit/contour", "contour", "4. Fit", "Scans"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        f"{LOGS}/plots/contour.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} contour --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plot_limits:
    """Upper limits with expected bands."""
    input:
        f"{FIT}/limits.json",
    output:
        figure(f"{PLOTS}/fit/limits", "limits", "4. Fit", "Limits"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        f"{LOGS}/plots/limits.log",
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.fit --settings {params.settings:q} limits --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plots_fit:
    """Figures of the statistical model and fits (no templates for an external workspace)."""
    input:
        rules.plot_templates.output if config["plots"]["templates"] and not EXTERNAL else [],
        rules.plot_stacks.output,
        rules.plot_fit_summary.output,
        scan_plots,
        rules.plot_limits.output,
