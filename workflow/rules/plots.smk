# Plots (analysis/plots): figures and tables, each registered in the Snakemake report with a
# caption (workflow/report/). Plot rules read stage outputs only and take only plot options as
# params, so restyling a figure (config `plots:`) reruns plot rules and nothing upstream.


rule plot_cutflow:
    """Cutflow of every sample's nominal selection: figure and tables."""
    input:
        nominal(paths.cutflow, SAMPLES),
    output:
        png=figure(paths.plots.cutflow, "cutflow", "1. Inputs", "Cutflow"),
        markdown=report(
            paths.plots.cutflow_md,
            caption="../report/cutflow_table.rst",
            category="1. Inputs",
            subcategory="Cutflow",
        ),
        latex=paths.plots.cutflow_tex,
    params:
        settings=plot_settings(),
        prefix=lambda wildcards, output: figure_prefix(wildcards, output.png),
    log:
        paths.logs.plot_cutflow,
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
            directory(paths.plots.features),
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
        qcd=as_json(config["histograms"]["qcd"]),
    threads: 2
    log:
        paths.logs.plot_features,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.distributions --settings {params.settings:q} features "
        "--skims {input.skims:q} --friends {input.friends:q} --processes {params.processes:q} "
        "--features {params.features:q} --blinding {params.blinding:q} --qcd {params.qcd:q} "
        "--output-dir {output:q} --workers {threads} 2> {log:q}"


rule plot_history:
    """Training curves of one fold."""
    input:
        paths.history,
    output:
        figure(paths.plots.history, "history", "2. Training", "Curves"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    wildcard_constraints:
        fold=r"\d+",
    log:
        paths.logs.plot_history,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.training --settings {params.settings:q} history "
        "--history {input:q} --prefix {params.prefix:q} 2> {log:q}"


rule plot_diagnostics:
    """Confusion matrices, ROC curves and train/test score distributions."""
    input:
        paths.diagnostics,
    output:
        figure(paths.plots.confusion_efficiency, "confusion", "2. Training", "Confusion"),
        figure(paths.plots.confusion_purity, "confusion", "2. Training", "Confusion"),
        figure(paths.plots.roc, "roc", "2. Training", "ROC"),
        per_class_figures(paths.plots.scores, "scores", "2. Training", "Scores"),
    params:
        settings=plot_settings(),
        classes=CLASSES,
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        paths.logs.plot_diagnostics,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.training --settings {params.settings:q} diagnostics "
        "--diagnostics {input:q} --classes {params.classes:q} "
        "--output-dir {params.output_dir:q} 2> {log:q}"


rule plot_taylor:
    """Taylor-coefficient feature ranking of the classifier."""
    input:
        paths.taylor_ranking,
    output:
        figure(paths.plots.taylor_first_order, "taylor_matrix", "2. Training", "Taylor"),
        per_class_figures(paths.plots.taylor_ranking, "taylor_ranking", "2. Training", "Taylor"),
    params:
        settings=plot_settings(),
        classes=CLASSES,
        output_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        paths.logs.plot_taylor,
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
            paths.plots.versions,
            caption="../report/versions.rst",
            category="0. Provenance",
        ),
        config=report(
            paths.plots.config,
            caption="../report/config.rst",
            category="0. Provenance",
        ),
    params:
        config=lambda wildcards: as_json(config),  # a function: no wildcards in its braces
    log:
        paths.logs.report_provenance,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.report --versions {input:q} --config {params.config:q} "
        "--versions-table {output.versions:q} --config-copy {output.config:q} 2> {log:q}"


rule plots_inputs:
    """Figures and tables of the inputs and the training: cutflow, features, classifier."""
    input:
        rules.plot_cutflow.output,
        rules.plot_features.output,
        fold_files(rules.plot_history.output),
        rules.plot_diagnostics.output,
        rules.plot_taylor.output,
        rules.report_provenance.output,


# ---- statistical model and fits ----


rule plot_templates:
    """Nominal and up/down templates of every systematic, per channel and process."""
    input:
        paths.histograms,
    output:
        report(
            directory(paths.plots.templates),
            patterns=["{name}.png"],
            caption="../report/templates.rst",
            category="3. Statistical model",
            subcategory="Templates",
        ),
    params:
        settings=plot_settings(),
        axes=channel_axes(),
    threads: 2
    log:
        paths.logs.plot_templates,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.stacks --settings {params.settings:q} templates "
        "--histograms {input:q} --axes {params.axes:q} --output-dir {output:q} "
        "--workers {threads} 2> {log:q}"


rule plot_stacks:
    """Pre-fit and post-fit stacks of every channel, and the yields tables."""
    input:
        unpack(stack_inputs),
    output:
        stacks=report(
            directory(paths.plots.stacks),
            patterns=["{name}.png"],
            caption="../report/stacks.rst",
            category="4. Fit",
            subcategory="Distributions",
        ),
        markdown=report(
            paths.plots.yields_md,
            caption="../report/yields.rst",
            category="4. Fit",
            subcategory="Yields",
        ),
        latex=paths.plots.yields_tex,
    params:
        settings=plot_settings(),
        model=inference_settings(),
        binning=lambda wildcards, input: input.get("binning", ""),
        axes=channel_axes(),
    log:
        paths.logs.plot_stacks,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.stacks --settings {params.settings:q} stacks "
        "--workspace {input.workspace:q} --model-settings {params.model:q} --fit {input.fit:q} "
        "--binning={params.binning:q} --axes {params.axes:q} "
        "--output-dir {output.stacks:q} --markdown {output.markdown:q} "
        "--latex {output.latex:q} 2> {log:q}"


rule plot_fit_summary:
    """Pulls, impacts ranking and correlation matrix."""
    input:
        fit=paths.fit,
        pulls=paths.pulls,
        ranking=paths.ranking,
    output:
        pulls=figure(paths.plots.pulls, "pulls", "4. Fit", "Pulls"),
        impacts=figure(paths.plots.impacts, "impacts", "4. Fit", "Impacts"),
        correlation=figure(paths.plots.correlation, "correlation", "4. Fit", "Correlations"),
    params:
        settings=plot_settings(),
        pulls=lambda wildcards, output: figure_prefix(wildcards, output.pulls),
        impacts=lambda wildcards, output: figure_prefix(wildcards, output.impacts),
        correlation=lambda wildcards, output: figure_prefix(wildcards, output.correlation),
    log:
        paths.logs.plot_fit_summary,
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
        paths.scan,
    output:
        figure(paths.plots.scan, "scan", "4. Fit", "Scans"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        paths.logs.plot_scan,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.scans --settings {params.settings:q} scan --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plot_contour:
    """Two-POI likelihood contour."""
    input:
        paths.scan2d,
    output:
        figure(paths.plots.contour, "contour", "4. Fit", "Scans"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        paths.logs.plot_contour,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.scans --settings {params.settings:q} contour --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plot_limits:
    """Upper limits with expected bands."""
    input:
        paths.limits,
    output:
        figure(paths.plots.limits, "limits", "4. Fit", "Limits"),
    params:
        settings=plot_settings(),
        prefix=figure_prefix,
    log:
        paths.logs.plot_limits,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.scans --settings {params.settings:q} limits --input {input:q} "
        "--prefix {params.prefix:q} 2> {log:q}"


rule plot_gof:
    """The goodness-of-fit p-values of the inputs: matrix (1D diagonal, 2D off it), histogram."""
    input:
        paths.gof,
    output:
        matrix=figure(paths.plots.gof_matrix, "gof_matrix", "5. Goodness of fit", "Matrix"),
        histogram=figure(
            paths.plots.gof_histogram, "gof_histogram", "5. Goodness of fit", "p-values"
        ),
    params:
        settings=plot_settings(),
        matrix=lambda wildcards, output: str(output.matrix[0]).removesuffix(".png"),
        histogram=lambda wildcards, output: str(output.histogram[0]).removesuffix(".png"),
    log:
        paths.logs.plot_gof,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.gof --settings {params.settings:q} p-values --input {input:q} "
        "--matrix {params.matrix:q} --histogram {params.histogram:q} 2> {log:q}"

rule plot_gof_distributions:
    """Each input variable's goodness-of-fit histogram, pre- and post-fit."""
    input:
        paths.gof,
    output:
        report(
            directory(paths.plots.gof_distributions),
            patterns=["{name}.png"],
            caption="../report/gof_distributions.rst",
            category="5. Goodness of fit",
            subcategory="Distributions",
        ),
    params:
        settings=plot_settings(),
    threads: 2
    log:
        paths.logs.plot_gof_distributions,
    conda:
        "../../envs/plots.yaml"
    shell:
        "python -m analysis.plots.gof --settings {params.settings:q} distributions "
        "--input {input:q} --output-dir {output:q} --workers {threads} 2> {log:q}"


rule plots_fit:
    """Figures of the statistical model and fits (no templates for an external workspace)."""
    input:
        rules.plot_templates.output if config["plots"]["templates"] and not EXTERNAL else [],
        rules.plot_stacks.output,
        rules.plot_fit_summary.output,
        scan_plots,
        rules.plot_limits.output,


rule plots:
    """Every figure and table, so that `snakemake plots --report report.html` holds them all
    (with an external workspace: the fit figures and the provenance)."""
    input:
        rules.report_provenance.output if EXTERNAL else rules.plots_inputs.input,
        rules.plots_fit.input,


# ---- goodness of fit of the inputs (not part of `all` nor `plots`) ----


rule gof:
    """The goodness-of-fit tests of the input variables and their figures."""
    input:
        rules.gof_gather.output,
        rules.plot_gof.output,
        rules.plot_gof_distributions.output,
