# Histograms per channel x process x variation, then the pyhf workspace.
# Binning is derived once from nominal simulation and shared by every sample and variation.


rule histogram_binning:
    """Bin edges per channel from the nominal simulation in the signal region."""
    input:
        **binning_inputs(),
    output:
        f"{RESULTS}/histograms/binning.json",
    params:
        processes=as_json([SAMPLES[sample]["process"] for sample in BINNING_SAMPLES]),
        settings=histogram_settings(),
    log:
        f"{LOGS}/histograms/binning.log",
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms binning --processes {params.processes:q} "
        "--skims {input.skims:q} --friends {input.friends:q} --scores {input.scores:q} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule histograms_sample:
    """All histograms of one sample: every variation in one pass over its columns."""
    input:
        skims=lambda wildcards: skims(wildcards.sample),
        friends=lambda wildcards: stage_files("friends", wildcards.sample),
        scores=lambda wildcards: stage_files("scores", wildcards.sample),
        binning=rules.histogram_binning.output,
    output:
        f"{RESULTS}/histograms/samples/{{sample}}.root",
    params:
        sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        variations=lambda wildcards: sample_variations(
            SAMPLES[wildcards.sample], config["variations"]
        ),
        settings=histogram_settings(),
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{LOGS}/histograms/{{sample}}.log",
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms fill --sample-spec {params.sample:q} "
        "--variations {params.variations} --skims {input.skims:q} --friends {input.friends:q} "
        "--scores {input.scores:q} --binning {input.binning:q} --settings {params.settings:q} "
        "--output {output:q} 2> {log:q}"


rule histograms_merge:
    """Sum per process, QCD from same-sign data, blinding, yields tables."""
    input:
        expand(f"{RESULTS}/histograms/samples/{{sample}}.root", sample=SAMPLES),
    output:
        histograms=f"{RESULTS}/histograms/histograms.root",
        blinding=f"{RESULTS}/histograms/blinding.json",
        yields_md=f"{RESULTS}/histograms/yields.md",
        yields_tex=f"{RESULTS}/histograms/yields.tex",
    params:
        settings=histogram_settings(),
    log:
        f"{LOGS}/histograms/merge.log",
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.histograms merge --inputs {input:q} --settings {params.settings:q} "
        "--output {output.histograms:q} --blinding {output.blinding:q} "
        "--yields {output.yields_md:q} {output.yields_tex:q} 2> {log:q}"


rule workspace_build:
    """The pyhf workspace, validated against the pyhf schema; pruned variations listed."""
    input:
        histograms=rules.histograms_merge.output.histograms,
        blinding=rules.histograms_merge.output.blinding,
    output:
        workspace=f"{RESULTS}/workspace/workspace.json",
        pruned=f"{RESULTS}/workspace/pruned.json",
    params:
        settings=as_json(
            {"workspace": config["workspace"], "histograms": config["histograms"]}
        ),
    log:
        f"{LOGS}/workspace/workspace.log",
    conda:
        "../../envs/histograms.yaml"
    shell:
        "python -m analysis.stats.workspace --histograms {input.histograms:q} "
        "--blinding {input.blinding:q} --settings {params.settings:q} "
        "--output {output.workspace:q} --pruned {output.pruned:q} 2> {log:q}"


rule histograms:
    input:
        rules.histograms_merge.output,
        rules.versions.output,


rule workspace:
    input:
        rules.workspace_build.output,
        rules.versions.output,
