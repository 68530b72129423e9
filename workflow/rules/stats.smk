# Statistics (analysis/stats): histograms per channel x process x variation, the pyhf workspace,
# and the inference on it (or on `inference.external_workspace`).


# ---- histograms and workspace ----
# Binning is derived once from nominal simulation and shared by every sample and variation.


rule histogram_binning:
    """Bin edges per channel from the nominal simulation in the signal region."""
    priority: ANALYSIS_CHAIN
    input:
        **binning_inputs(),
    output:
        paths.binning,
    params:
        processes=as_json([SAMPLES[sample]["process"] for sample in BINNING_SAMPLES]),
        settings=histogram_settings(),
    log:
        paths.logs.histogram_binning,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms binning --processes {params.processes:q} "
        "--skims {input.skims:q} --friends {input.friends:q} --scores {input.scores:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule histograms_sample:
    """All histograms of one sample: every variation in one pass over its columns."""
    priority: ANALYSIS_CHAIN
    input:
        skims=of_sample(paths.skim),
        friends=of_sample(paths.friend),
        scores=of_sample(paths.scores),
        binning=rules.histogram_binning.output,
    output:
        paths.sample_histograms,
    params:
        sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        variations=lambda wildcards: variations_of(wildcards.sample),
        settings=sample_histogram_settings,
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        paths.logs.histograms_sample,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms fill --sample-spec {params.sample:q} "
        "--variations {params.variations} --skims {input.skims:q} --friends {input.friends:q} "
        "--scores {input.scores:q} --binning {input.binning:q} --settings {params.settings:q} "
        "--output {output:q} 2> {log:q}"


rule histograms_merge:
    """Sum per process, QCD from same-sign data, blinding, yields tables."""
    priority: ANALYSIS_CHAIN
    input:
        expand(paths.sample_histograms, sample=SAMPLES),
    output:
        histograms=paths.histograms,
        blinding=paths.blinding,
        yields_md=paths.yields_md,
        yields_tex=paths.yields_tex,
    params:
        settings=histogram_settings(),
        unblind=UNBLIND_FLAG,
        eras=sample_eras(),
    log:
        paths.logs.histograms_merge,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms merge --inputs {input:q} "
        "--settings {params.settings:q} {params.unblind} {params.eras} "
        "--output {output.histograms:q} --blinding {output.blinding:q} "
        "--yields {output.yields_md:q} {output.yields_tex:q} 2> {log:q}"


rule workspace_build:
    """The pyhf workspace, validated against the pyhf schema; pruned variations listed."""
    priority: ANALYSIS_CHAIN
    input:
        histograms=rules.histograms_merge.output.histograms,
    output:
        workspace=paths.workspace,
        pruned=paths.pruned,
    params:
        settings=workspace_settings(),
        unblind=UNBLIND_FLAG,
    log:
        paths.logs.workspace_build,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.workspace --histograms {input.histograms:q} "
        "--settings {params.settings:q} {params.unblind} "
        "--output {output.workspace:q} --pruned {output.pruned:q} 2> {log:q}"


# ---- exports of the workspace ----
# For other tools: a CMS combine datacard and HistFactory XML, written from the workspace JSON.


rule datacard_export:
    """The workspace as a combine datacard with its shapes file (data_obs Asimov while blinded)."""
    input:
        workspace=paths.workspace,
        binning=paths.binning,
    output:
        datacard=paths.datacard,
        shapes=paths.datacard_shapes,
    params:
        unblind=UNBLIND_FLAG,
    log:
        paths.logs.datacard_export,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.datacard --workspace {input.workspace:q} "
        "--binning {input.binning:q} {params.unblind} --datacard {output.datacard:q} "
        "--shapes {output.shapes:q} 2> {log:q}"


rule xml_export:
    """The workspace as HistFactory XML + ROOT (pyhf's json2xml)."""
    input:
        workspace=paths.workspace,
    output:
        directory(paths.xml),
    log:
        paths.logs.xml_export,
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histfactory --workspace {input.workspace:q} "
        "--output-dir {output:q} 2> {log:q}"


rule histograms:
    input:
        rules.histograms_merge.output,
        rules.versions.output,


rule workspace:
    input:
        rules.workspace_build.output,
        rules.versions.output,


rule datacard:
    input:
        rules.datacard_export.output,
        rules.versions.output,


rule xml:
    input:
        rules.xml_export.output,
        rules.versions.output,


# ---- inference ----
# The nominal fit, pulls, impacts ranking and likelihood scans (both fanned out in chunks, one job
# each), discovery significance and CLs limits. The nominal fit is a checkpoint: the POIs and the
# parameters to rank, hence the number of ranking and scan jobs, are read from it once it exists.


checkpoint inference_fit:
    """Nominal maximum-likelihood fit: best fit, uncertainties, correlations, goodness of fit."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
    output:
        paths.fit,
    params:
        settings=inference_settings(),
    log:
        paths.logs.inference_fit,
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.fit --workspace {input.workspace:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule inference_pulls:
    """Pulls and constraints of the nuisance parameters, free parameters listed apart."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
        fit=paths.fit,
    output:
        paths.pulls,
    params:
        settings=inference_settings(),
    log:
        paths.logs.inference_pulls,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.pulls --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --output {output:q} 2> {log:q}"


rule ranking_chunk:
    """Impacts of one chunk of parameters (four refits each, warm-started from the best fit)."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
        fit=paths.fit,
    output:
        paths.ranking_chunk,
    params:
        settings=inference_settings("refits"),
        chunk_size=INFERENCE["ranking"]["chunk_size"],
        exclude=INFERENCE["ranking"]["exclude"],
    wildcard_constraints:
        chunk=r"\d+",
    log:
        paths.logs.ranking_chunk,
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.ranking chunk --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --chunk {wildcards.chunk} "
        "--chunk-size {params.chunk_size} --exclude {params.exclude:q} --output {output:q} "
        "2> {log:q}"


rule ranking_gather:
    """All chunks merged, sorted by decreasing total post-fit impact."""
    priority: ANALYSIS_CHAIN
    input:
        ranking_chunks,
    output:
        paths.ranking,
    log:
        paths.logs.ranking_gather,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.ranking gather {input:q} --output {output:q} 2> {log:q}"


rule scan_chunk:
    """Profile likelihood at one chunk of the points of a scan."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
        fit=paths.fit,
    output:
        paths.scan_chunk,
    params:
        settings=inference_settings("scan", "refits"),
        parameters=scan_parameters,
    wildcard_constraints:
        chunk=r"\d+",
    log:
        paths.logs.scan_chunk,
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.scan chunk --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --parameters {params.parameters} "
        "--chunk {wildcards.chunk} --output {output:q} 2> {log:q}"


rule scan_gather:
    """A POI's 1D scan with its 68% and 95% intervals."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
        fit=paths.fit,
        chunks=scan_chunks,
    output:
        paths.scan,
    params:
        settings=inference_settings("scan"),
    log:
        paths.logs.scan_gather,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.scan gather --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --parameters {wildcards.scan} "
        "--chunks {input.chunks:q} --output {output:q} 2> {log:q}"


rule scan2d_gather:
    """The 2D scan of two POIs."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
        fit=paths.fit,
        chunks=scan_chunks,
    output:
        paths.scan2d,
    params:
        settings=inference_settings("scan"),
        parameters=lambda wildcards: " ".join(fitted_pois()),
    log:
        paths.logs.scan2d_gather,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.scan gather --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --parameters {params.parameters} "
        "--chunks {input.chunks:q} --output {output:q} 2> {log:q}"


rule inference_significance:
    """Observed and expected discovery significance of each POI."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
    output:
        paths.significance,
    params:
        settings=inference_settings(),
    log:
        paths.logs.inference_significance,
    resources:
        runtime=30,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.limits significance --workspace {input.workspace:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule inference_limits:
    """Observed and expected (+-1, 2 sigma) CLs upper limits on each POI."""
    priority: ANALYSIS_CHAIN
    input:
        **inference_inputs(),
    output:
        paths.limits,
    params:
        settings=inference_settings("limits"),
    log:
        paths.logs.inference_limits,
    resources:
        runtime=60,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.limits limits --workspace {input.workspace:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule fit:
    input:
        rules.inference_fit.output,


rule pulls:
    input:
        rules.inference_pulls.output,


rule ranking:
    input:
        rules.ranking_gather.output,


rule scan:
    input:
        scan_outputs,


rule significance:
    input:
        rules.inference_significance.output,


rule limits:
    input:
        rules.inference_limits.output,


rule inference:
    input:
        rules.fit.input,
        rules.pulls.input,
        rules.ranking.input,
        scan_outputs,
        rules.significance.input,
        rules.limits.input,


# ---- goodness of fit of the input variables ----
# Not part of `all`: `snakemake gof` tests every input variable and pair, chunks of tests fanned
# out one job each (their number follows from the config).


rule gof_chunk:
    """Saturated goodness-of-fit tests with toys of one chunk of input variables and pairs."""
    input:
        skims=every_sample(paths.skim),
        friends=every_sample(paths.friend),
        scores=every_sample(paths.scores),
    output:
        paths.gof_chunk,
    params:
        manifest=gof_manifest(),
        settings=gof_settings(),
    wildcard_constraints:
        chunk=r"\d+",
    log:
        paths.logs.gof_chunk,
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/gof.yaml"
    shell:
        "python -m analysis.stats.input_gof chunk --manifest {params.manifest:q} "
        "--settings {params.settings:q} --chunk {wildcards.chunk} --output {output:q} 2> {log:q}"


rule gof_gather:
    """Every test in gof.json, with the fraction below 5% and the uniformity of the p-values."""
    input:
        gof_chunks(),
    output:
        paths.gof,
    log:
        paths.logs.gof_gather,
    conda:
        "../../envs/gof.yaml"
    shell:
        "python -m analysis.stats.input_gof gather {input:q} --output {output:q} 2> {log:q}"
