# Built-in toy dataset: NanoAOD-like ROOT files for every sample with a `toy` block.


rule toydata_sample:
    output:
        f"{RESULTS}/toydata/{{sample}}.root",
    params:
        settings=toy_settings,
    wildcard_constraints:
        sample=alternatives(TOY_SAMPLES),
    log:
        f"{LOGS}/toydata/{{sample}}.log",
    resources:
        mem_mb=on_attempt(2000),
        runtime=on_attempt(30),
    conda:
        "../../envs/toydata.yaml"
    shell:
        "python -m analysis.selection.toydata --sample {wildcards.sample} --settings {params.settings:q} "
        "--output {output:q} 2> {log:q}"


rule toydata:
    input:
        expand(f"{RESULTS}/toydata/{{sample}}.root", sample=TOY_SAMPLES),
