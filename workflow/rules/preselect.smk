# Preselection (coffea + dask): one job per sample evaluates all shape variations in one read.

PRESELECT_SETTINGS = as_json(
    {key: config[key] for key in ("branches", "selection", "variations", "weights")}
)
# How the work is executed, not what it computes: kept out of params so that switching
# the dask mode or chunk size does not rerun finished samples.
DASK_SETTINGS = as_json(config["preselect"]["dask"])
CHUNKSIZE = config["preselect"]["chunksize"]


def preselect_outputs(variations):
    return {
        "skims": expand(
            f"{RESULTS}/preselect/{{sample}}/{{variation}}.root",
            variation=variations,
            allow_missing=True,
        ),
        "cutflows": expand(
            f"{RESULTS}/preselect/{{sample}}/{{variation}}.cutflow.json",
            variation=variations,
            allow_missing=True,
        ),
    }


PRESELECT_SHELL = (
    "python -m analysis.preselect --sample {wildcards.sample} "
    "--sample-spec {params.sample:q} --files {input:q} --settings {params.settings:q} "
    "--output-dir {params.output_dir:q} --chunksize {CHUNKSIZE} --workers {threads} "
    "--dask {DASK_SETTINGS:q} 2> {log:q}"
)


rule preselect_sample:
    """Nominal simulation: the nominal skim plus every object-level shape variation."""
    input:
        sample_files,
    output:
        **preselect_outputs(sample_variations({"type": "mc"}, config["variations"])),
    params:
        sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        settings=PRESELECT_SETTINGS,
        output_dir=lambda wildcards: f"{RESULTS}/preselect/{wildcards.sample}",
    wildcard_constraints:
        sample=alternatives(VARIED_SAMPLES),
    threads: config["preselect"]["threads"]
    resources:
        mem_mb=config["preselect"]["mem_mb"],
        runtime=60,
    log:
        f"{LOGS}/preselect/{{sample}}.log",
    conda:
        "../../envs/preselect.yaml"
    shell:
        PRESELECT_SHELL


use rule preselect_sample as preselect_sample_nominal_only with:
    output:
        **preselect_outputs(["nominal"]),
    wildcard_constraints:
        sample=alternatives(NOMINAL_ONLY_SAMPLES),


rule preselect:
    input:
        all_skims(),
