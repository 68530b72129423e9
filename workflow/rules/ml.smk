# Machine learning (analysis/ml): the classifier (one job per k-fold), its diagnostics, and the
# scores of every sample and variation. How a job runs (threads, memory, GPUs) is in resources, so
# changing it does not retrain.


rule train_fold:
    """The model that scores fold {fold}, trained on all other folds."""
    priority: ANALYSIS_CHAIN
    input:
        **training_inputs(),
        variations=uncertainty_aware_files(),
    output:
        model=paths.model,
        history=paths.history,
    params:
        classes=as_json(TRAINING_CLASSES),
        processes=as_json([SAMPLES[sample]["process"] for sample, _ in TRAINING]),
        variations=as_json(uncertainty_aware_entries()),
        settings=train_settings(),
    wildcard_constraints:
        fold=r"\d+",
    threads: config["train"]["threads"]
    resources:
        mem_mb=on_attempt(config["train"]["mem_mb"]),
        runtime=on_attempt(config["train"]["runtime"]),
        gpu=config["train"]["gpus"],
    log:
        paths.logs.train_fold,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m analysis.ml.train --fold {wildcards.fold} --classes {params.classes:q} "
        "--skims {input.skims:q} --friends {input.friends:q} --settings {params.settings:q} "
        "--threads {threads} --processes {params.processes:q} --variations {params.variations:q} "
        "--model {output.model:q} --history {output.history:q} 2> {log:q}"


rule train_diagnostics:
    """Confusion matrices, ROC curves, train/test score distributions, Taylor ranking."""
    priority: ANALYSIS_CHAIN  # two cores: run beside the analysis, not alone after it
    input:
        **training_inputs(),
        models=fold_files(paths.model),
    output:
        diagnostics=paths.diagnostics,
        taylor=paths.taylor_ranking,
    params:
        classes=as_json(TRAINING_CLASSES),
        settings=train_settings(diagnostics=True),
    threads: config["train"]["threads"]
    resources:
        mem_mb=on_attempt(config["train"]["mem_mb"]),
        runtime=on_attempt(config["train"]["runtime"]),
    log:
        paths.logs.train_diagnostics,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m analysis.ml.diagnostics --classes {params.classes:q} --skims {input.skims:q} "
        "--friends {input.friends:q} --models {input.models:q} --settings {params.settings:q} "
        "--threads {threads} --output {output.diagnostics:q} --taylor {output.taylor:q} "
        "2> {log:q}"


for variation_set in VARIATION_SETS:

    rule:
        """Scores of every variation of a nominal simulated sample."""
        name:
            f"inject_sample{variation_set.suffix}"
        priority: ANALYSIS_CHAIN
        input:
            skims=of_sample(paths.skim),
            friends=of_sample(paths.friend),
            models=fold_files(paths.model),
        output:
            variation_outputs(paths.scores, variation_set.variations),
        wildcard_constraints:
            sample=alternatives(variation_set.samples),
        threads: 1
        resources:
            mem_mb=on_attempt(2000),
            runtime=on_attempt(10),
        log:
            paths.logs.inject_sample,
        conda:
            "../../envs/train.yaml"
        shell:
            "python -m analysis.ml.inject --skims {input.skims:q} --friends {input.friends:q} "
            "--models {input.models:q} --outputs {output:q} --threads {threads} 2> {log:q}"


use rule inject_sample as inject_sample_nominal_only with:
    output:
        variation_outputs(paths.scores, [NOMINAL]),
    wildcard_constraints:
        sample=alternatives(NOMINAL_ONLY_SAMPLES),


rule train:
    input:
        fold_files(paths.model),
        fold_files(paths.history),
        rules.train_diagnostics.output,
        rules.versions.output,


rule inject:
    input:
        every_sample(paths.scores),
        rules.versions.output,
