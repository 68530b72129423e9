# Statistical inference on a pyhf workspace (ours, or `inference.external_workspace`): the nominal
# fit, pulls, impacts ranking and likelihood scans (both fanned out in chunks, one job each),
# discovery significance and CLs limits. Outputs under {RESULTS}/fit/ (results contract in
# DESIGN.md). The nominal fit is a checkpoint: the POIs and the parameters to rank, hence the
# number of ranking jobs, are read from it once it exists.


checkpoint inference_fit:
    """Nominal maximum-likelihood fit: best fit, uncertainties, correlations, goodness of fit."""
    input:
        **inference_inputs(),
    output:
        f"{RESULTS}/fit/fit.json",
    params:
        settings=inference_settings(),
    log:
        f"{LOGS}/fit/fit.log",
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.fit --workspace {input.workspace:q} --settings {params.settings:q} "
        "--output {output:q} 2> {log:q}"


rule inference_pulls:
    """Pulls and constraints of the nuisance parameters, free parameters listed apart."""
    input:
        **inference_inputs(),
        fit=f"{RESULTS}/fit/fit.json",
    output:
        f"{RESULTS}/fit/pulls.json",
    params:
        settings=inference_settings(),
    log:
        f"{LOGS}/fit/pulls.log",
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.pulls --workspace {input.workspace:q} --settings {params.settings:q} "
        "--fit {input.fit:q} --output {output:q} 2> {log:q}"


rule ranking_chunk:
    """Impacts of one chunk of parameters (four refits each, warm-started from the best fit)."""
    input:
        **inference_inputs(),
        fit=f"{RESULTS}/fit/fit.json",
    output:
        f"{RESULTS}/fit/ranking/chunk_{{chunk}}.json",
    params:
        settings=inference_settings(),
        chunk_size=INFERENCE.get("ranking", {}).get("chunk_size", 8),
        exclude=INFERENCE.get("ranking", {}).get("exclude", []),
    wildcard_constraints:
        chunk=r"\d+",
    log:
        f"{LOGS}/fit/ranking/chunk_{{chunk}}.log",
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
    input:
        ranking_chunks,
    output:
        f"{RESULTS}/fit/ranking.json",
    log:
        f"{LOGS}/fit/ranking.log",
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.ranking gather {input:q} --output {output:q} 2> {log:q}"


rule scan_chunk:
    """Profile likelihood at one chunk of the points of a scan."""
    input:
        **inference_inputs(),
        fit=f"{RESULTS}/fit/fit.json",
    output:
        f"{RESULTS}/fit/scan/{{scan}}/chunk_{{chunk}}.json",
    params:
        settings=inference_settings("scan"),
        parameters=scan_parameters,
    wildcard_constraints:
        chunk=r"\d+",
    log:
        f"{LOGS}/fit/scan/{{scan}}/chunk_{{chunk}}.log",
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
    input:
        **inference_inputs(),
        fit=f"{RESULTS}/fit/fit.json",
        chunks=scan_chunks,
    output:
        f"{RESULTS}/fit/scan_{{scan}}.json",
    params:
        settings=inference_settings("scan"),
    log:
        f"{LOGS}/fit/scan_{{scan}}.log",
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.scan gather --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --parameters {wildcards.scan} "
        "--chunks {input.chunks:q} --output {output:q} 2> {log:q}"


rule scan2d_gather:
    """The 2D scan of two POIs."""
    input:
        **inference_inputs(),
        fit=f"{RESULTS}/fit/fit.json",
        chunks=scan_chunks,
    output:
        f"{RESULTS}/fit/scan2d.json",
    params:
        settings=inference_settings("scan"),
        parameters=lambda wildcards: " ".join(fitted_pois()),
    log:
        f"{LOGS}/fit/scan2d.log",
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.scan gather --workspace {input.workspace:q} "
        "--settings {params.settings:q} --fit {input.fit:q} --parameters {params.parameters} "
        "--chunks {input.chunks:q} --output {output:q} 2> {log:q}"


rule inference_significance:
    """Observed and expected discovery significance of each POI."""
    input:
        **inference_inputs(),
    output:
        f"{RESULTS}/fit/significance.json",
    params:
        settings=inference_settings(),
    log:
        f"{LOGS}/fit/significance.log",
    resources:
        runtime=30,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.limits significance --workspace {input.workspace:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule inference_limits:
    """Observed and expected (+-1, 2 sigma) CLs upper limits on each POI."""
    input:
        **inference_inputs(),
    output:
        f"{RESULTS}/fit/limits.json",
    params:
        settings=inference_settings("limits"),
    log:
        f"{LOGS}/fit/limits.log",
    resources:
        runtime=60,
    conda:
        "../../envs/inference.yaml"
    shell:
        "python -m analysis.stats.limits limits --workspace {input.workspace:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule fit:
    input:
        f"{RESULTS}/fit/fit.json",


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

