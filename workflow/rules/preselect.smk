# Preselection (coffea + dask): one job per sample evaluates all shape variations in one read.
# How the work runs (dask mode, chunk size) is passed as resources, not params: it does not change
# the skims, so switching it must not rerun finished samples.


rule preselect_sample:
    """Nominal simulation: the nominal skim plus every object-level shape variation."""
    input:
        sample_files,
    output:
        **preselect_outputs(sample_variations({"type": "mc"}, config["variations"])),
    params:
        sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        settings=as_json(
            {key: config[key] for key in ("branches", "selection", "variations", "weights")}
        ),
        output_dir=lambda wildcards: f"{RESULTS}/preselect/{wildcards.sample}",
    wildcard_constraints:
        sample=alternatives(VARIED_SAMPLES),
    threads: config["preselect"]["threads"]
    resources:
        mem_mb=on_attempt(config["preselect"]["mem_mb"]),
        runtime=on_attempt(60),
        chunksize=config["preselect"]["chunksize"],
        dask_mode=config["preselect"]["dask"]["mode"],
        dask_address=config["preselect"]["dask"].get("address") or "none",
        dask_jobs=config["preselect"]["dask"].get("jobs", 1),
    log:
        f"{LOGS}/preselect/{{sample}}.log",
    conda:
        "../../envs/preselect.yaml"
    shell:
        "python -m analysis.selection.preselect --sample {wildcards.sample} "
        "--sample-spec {params.sample:q} --files {input:q} --settings {params.settings:q} "
        "--output-dir {params.output_dir:q} --chunksize {resources.chunksize} "
        "--workers {threads} --dask-mode {resources.dask_mode} "
        "--dask-address {resources.dask_address} --dask-jobs {resources.dask_jobs} 2> {log:q}"


use rule preselect_sample as preselect_sample_nominal_only with:
    output:
        **preselect_outputs(["nominal"]),
    wildcard_constraints:
        sample=alternatives(NOMINAL_ONLY_SAMPLES),


rule preselect:
    input:
        all_skims(),
        rules.versions.output,
