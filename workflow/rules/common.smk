# Shared helpers of the workflow: config and samples loading, sample lists and input functions.
# Logic about variations and samples lives in analysis/config.py so the stages agree with the DAG.

import json
import sys
from pathlib import Path

from analysis.config import (
    TRAIN_EXECUTION_KEYS,
    check_samples,
    check_train_classes,
    has_shape_variations,
    is_simulation,
    load_yaml,
    sample_variations,
    training_samples,
    validate as validate_document,
)
from analysis.errors import AnalysisError


SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"


def _load_samples():
    """The samples file, validated; stops with one line naming what is wrong."""
    try:
        validate_document(config, SCHEMAS / "config.schema.yaml", "config")
        samples = load_yaml(config["samples"])
        validate_document(samples, SCHEMAS / "samples.schema.yaml", config["samples"])
        check_samples(samples["samples"], config["samples"])
        check_train_classes(samples["samples"], config["train"]["classes"])
    except AnalysisError as err:
        sys.exit(f"error: {err}")
    return samples["samples"]


SAMPLES = _load_samples()
RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"

TOY_SAMPLES = [name for name, sample in SAMPLES.items() if "toy" in sample]
VARIED_SAMPLES = [name for name, sample in SAMPLES.items() if has_shape_variations(sample)]
NOMINAL_ONLY_SAMPLES = [name for name in SAMPLES if name not in VARIED_SAMPLES]


def alternatives(names):
    """A wildcard constraint matching exactly these sample names."""
    return "|".join(names) if names else "(?!x)x"


def sample_files(wildcards):
    """Input files of a sample: its NanoAOD files, or the toy file the workflow generates."""
    sample = SAMPLES[wildcards.sample]
    if "toy" in sample:
        return [f"{RESULTS}/toydata/{wildcards.sample}.root"]
    return sample["files"]


def stage_files(stage, sample):
    """A per-sample stage's ROOT files, one per variation of the sample."""
    return [
        f"{RESULTS}/{stage}/{sample}/{variation}.root"
        for variation in sample_variations(SAMPLES[sample], config["variations"])
    ]


def skims(sample):
    """All skims (one per variation) of a sample."""
    return stage_files("preselect", sample)


def all_skims():
    return [path for sample in SAMPLES for path in skims(sample)]


def all_friends():
    return [path for sample in SAMPLES for path in stage_files("friends", sample)]


def variation_outputs(stage, variations):
    """Per-variation ROOT outputs of a per-sample job of ``stage``."""
    return expand(
        f"{RESULTS}/{stage}/{{sample}}/{{variation}}.root",
        variation=variations,
        allow_missing=True,
    )


def all_scores():
    return [path for sample in SAMPLES for path in stage_files("scores", sample)]


TRAINING = training_samples(SAMPLES, config["train"]["classes"])
FOLD_MODELS = [
    f"{RESULTS}/train/fold{fold}/model.pt" for fold in range(config["friends"]["folds"])
]
FOLD_HISTORIES = [
    f"{RESULTS}/train/fold{fold}/history.json" for fold in range(config["friends"]["folds"])
]


TRAINING_CLASSES = [class_name for _, class_name in TRAINING]


def training_inputs():
    """Nominal skims and friends of the training samples (in the order of TRAINING_CLASSES)."""
    return {
        "skims": [f"{RESULTS}/preselect/{sample}/nominal.root" for sample, _ in TRAINING],
        "friends": [f"{RESULTS}/friends/{sample}/nominal.root" for sample, _ in TRAINING],
    }


def train_settings():
    """The train section without execution keys, so changing those does not retrain.

    Classes become a list: their order is the order of the network outputs, and JSON with sorted
    keys would lose the order of a mapping.
    """
    settings = {
        key: value for key, value in config["train"].items() if key not in TRAIN_EXECUTION_KEYS
    }
    settings["classes"] = list(config["train"]["classes"])
    return as_json(settings)


def preselect_outputs(variations):
    """Named outputs of a preselection job: one skim and one cutflow per variation."""
    pattern = f"{RESULTS}/preselect/{{sample}}/{{variation}}"
    return {
        "skims": expand(f"{pattern}.root", variation=variations, allow_missing=True),
        "cutflows": expand(f"{pattern}.cutflow.json", variation=variations, allow_missing=True),
    }


def toy_settings(wildcards):
    """Only what shapes this toy sample's file, so unrelated config edits do not regenerate it."""
    sample = SAMPLES[wildcards.sample]
    relevant = SAMPLES if sample["type"] == "data" else {wildcards.sample: sample}
    return as_json(
        {
            "samples": {name: SAMPLES[name] for name in relevant if "toy" in SAMPLES[name]},
            "toydata": config["toydata"],
            "lumi": config["lumi"],
            "variations": config["variations"],
            "tau_id_sf": config["weights"].get("tau_id_sf"),
        }
    )


def tau_id_correction_file(wildcards):
    """The tau_h ID scale-factor file, an input of the friend trees when configured."""
    tau_id_sf = config["weights"].get("tau_id_sf")
    return [tau_id_sf["file"]] if tau_id_sf else []


def as_json(data):
    """Serialise settings for a command line; sorted keys keep params stable across runs."""
    return json.dumps(data, sort_keys=True)



def on_attempt(first):
    """A resource callable: ``first`` on the first attempt, ``n * first`` on the n-th.

    With ``--retries`` (set by the cluster profile) a job killed for memory or time is resubmitted
    with more; a local run has one attempt, so it sees ``first``.
    """
    return lambda wildcards, attempt: first * attempt
