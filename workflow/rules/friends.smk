# Friend trees: event weights with all weight variations and the k-fold index, per skim.

rule friends_sample:
    input:
        skim=f"{RESULTS}/preselect/{{sample}}/{{variation}}.root",
        cutflow=f"{RESULTS}/preselect/{{sample}}/nominal.cutflow.json",
        corrections=tau_id_correction_file,
    output:
        f"{RESULTS}/friends/{{sample}}/{{variation}}.root",
    params:
        sample=lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        settings=as_json(
            {
                "lumi": config["lumi"],
                "weights": config["weights"],
                "folds": config["friends"]["folds"],
            }
        ),
    log:
        f"{LOGS}/friends/{{sample}}/{{variation}}.log",
    resources:
        mem_mb=on_attempt(2000),
        runtime=on_attempt(10),
    conda:
        "../../envs/friends.yaml"
    shell:
        "python -m analysis.selection.friends --sample {wildcards.sample} --sample-spec {params.sample:q} "
        "--skim {input.skim:q} --cutflow {input.cutflow:q} --settings {params.settings:q} "
        "--output {output:q} 2> {log:q}"


rule friends:
    input:
        all_friends(),
        rules.versions.output,
