# Selection (analysis/selection): the built-in toy NanoAOD, the coffea preselection into skims (one
# per shape variation) and the friend trees with event weights and the k-fold index.


rule toydata_sample:
    """NanoAOD-like ROOT file of a sample with a `toy` block."""
    priority: ANALYSIS_CHAIN
    output:
        paths.toydata,
    params:
        settings=toy_settings,
    wildcard_constraints:
        sample=alternatives(TOY_SAMPLES),
    log:
        paths.logs.toydata_sample,
    resources:
        mem_mb=on_attempt(2000),
        runtime=on_attempt(30),
    conda:
        "../../envs/toydata.yaml"
    shell:
        "python -m analysis.selection.toydata --sample {wildcards.sample} "
        "--settings {params.settings:q} --output {output:q} 2> {log:q}"


rule btag_efficiency:
    """The b-tagging efficiency map of an era's simulation, when the config asks for it
    (weights.corrections.btag.efficiency.file: measured)."""
    priority: ANALYSIS_CHAIN
    input:
        unpack(btag_efficiency_inputs),
    output:
        paths.btag_efficiency,
    params:
        files=btag_efficiency_files,
        settings=btag_efficiency_settings,
    log:
        paths.logs.btag_efficiency,
    resources:
        mem_mb=on_attempt(4000),
        runtime=on_attempt(60),
        chunksize=config["preselect"]["chunksize"],
    conda:
        "../../envs/preselect.yaml"
    shell:
        "python -m analysis.selection.btag_efficiency --files {params.files:q} "
        "--settings {params.settings:q} --chunksize {resources.chunksize} "
        "--output {output:q} 2> {log:q}"


# One job per sample evaluates all shape variations in one read (coffea + dask). A sample of more
# than preselect.files_per_job files runs one job per part of that many files, then a merge in
# part order into the sample's skims and cutflows (analysis/selection/parts.py). Each set of shape
# variations (eras may name different ones) has its own rules, the first set the plain names
# (common.smk, VARIATION_SETS); the nominal-only samples' rules derive from the first.

for variation_set in VARIATION_SETS:

    rule:
        """Nominal simulation: the nominal skim plus every object-level shape variation."""
        name:
            f"preselect_sample{variation_set.suffix}"
        priority: ANALYSIS_CHAIN
        input:
            **preselect_inputs(),
        output:
            **preselect_outputs(variation_set.variations),
        params:
            **preselect_params(),
        wildcard_constraints:
            sample=unsplit(variation_set.samples),
        threads: preselect_threads
        resources:
            **preselect_resources(),
        log:
            paths.logs.preselect_sample,
        conda:
            "../../envs/preselect.yaml"
        shell:
            PRESELECT_COMMAND

    rule:
        """One part of a split sample of nominal simulation, all its shape variations."""
        name:
            f"preselect_part{variation_set.suffix}"
        priority: ANALYSIS_CHAIN
        input:
            **preselect_inputs(),
        output:
            **part_outputs(variation_set.variations),
        params:
            **preselect_params(),
        wildcard_constraints:
            sample=split(variation_set.samples),
            part=PART,
        threads: preselect_threads
        resources:
            **preselect_resources(),
        log:
            paths.logs.preselect_part,
        conda:
            "../../envs/preselect.yaml"
        shell:
            PRESELECT_COMMAND

    rule:
        """A split sample's skims and cutflows from its parts, concatenated in part order."""
        name:
            f"preselect_merge{variation_set.suffix}"
        priority: ANALYSIS_CHAIN
        input:
            merge_inputs,
        output:
            **preselect_outputs(variation_set.variations),
        params:
            parts=merge_part_dirs,
            variations=merge_variations,
            output_dir=lambda wildcards, output: os.path.dirname(output.skims[0]),
        wildcard_constraints:
            sample=split(variation_set.samples),
        log:
            paths.logs.preselect_merge,
        resources:
            mem_mb=on_attempt(2000),
            runtime=on_attempt(30),
        conda:
            "../../envs/preselect.yaml"
        shell:
            "python -m analysis.selection.parts --sample {wildcards.sample} "
            "--parts {params.parts:q} --variations {params.variations} "
            "--output-dir {params.output_dir:q} 2> {log:q}"

    rule:
        """Event weights with all weight variations, and the k-fold index, of every skim of one
        sample (one job per sample: a job per skim was mostly interpreter start-up)."""
        name:
            f"friends_sample{variation_set.suffix}"
        priority: ANALYSIS_CHAIN
        input:
            skims=of_sample(paths.skim),
            cutflow=paths.cutflow.format(sample="{sample}", variation=NOMINAL),
            corrections=tau_id_correction_file,
        output:
            variation_outputs(paths.friend, variation_set.variations),
        params:
            sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
            settings=friend_settings,
        wildcard_constraints:
            sample=alternatives(variation_set.samples),
        log:
            paths.logs.friends_sample,
        resources:
            mem_mb=on_attempt(2000),
            runtime=on_attempt(10),
        conda:
            "../../envs/friends.yaml"
        shell:
            "python -m analysis.selection.friends --sample {wildcards.sample} "
            "--sample-spec {params.sample:q} --skims {input.skims:q} "
            "--cutflow {input.cutflow:q} --settings {params.settings:q} "
            "--outputs {output:q} 2> {log:q}"


use rule preselect_sample as preselect_sample_nominal_only with:
    output:
        **preselect_outputs([NOMINAL]),
    wildcard_constraints:
        sample=unsplit(NOMINAL_ONLY_SAMPLES),


use rule preselect_part as preselect_part_nominal_only with:
    output:
        **part_outputs([NOMINAL]),
    wildcard_constraints:
        sample=split(NOMINAL_ONLY_SAMPLES),
        part=PART,


use rule preselect_merge as preselect_merge_nominal_only with:
    output:
        **preselect_outputs([NOMINAL]),
    wildcard_constraints:
        sample=split(NOMINAL_ONLY_SAMPLES),


use rule friends_sample as friends_sample_nominal_only with:
    output:
        variation_outputs(paths.friend, [NOMINAL]),
    wildcard_constraints:
        sample=alternatives(NOMINAL_ONLY_SAMPLES),


rule toydata:
    input:
        expand(paths.toydata, sample=TOY_SAMPLES),


rule preselect:
    input:
        every_sample(paths.skim),
        rules.versions.output,


rule friends:
    input:
        every_sample(paths.friend),
        rules.versions.output,
