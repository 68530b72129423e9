# Shared helpers of the workflow: config and samples loading, sample lists and input functions.
# Logic about variations and samples lives in analysis/config.py so the stages agree with the DAG.

import json
import sys
from pathlib import Path

from analysis.config import (
    check_samples,
    has_shape_variations,
    is_simulation,
    load_yaml,
    sample_variations,
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


def skims(sample):
    """All skims (one per variation) of a sample."""
    return [
        f"{RESULTS}/preselect/{sample}/{variation}.root"
        for variation in sample_variations(SAMPLES[sample], config["variations"])
    ]


def all_skims():
    return [path for sample in SAMPLES for path in skims(sample)]


def all_friends():
    return [path.replace("/preselect/", "/friends/") for path in all_skims()]


def as_json(data):
    """Serialise settings for a command line; sorted keys keep params stable across runs."""
    return json.dumps(data, sort_keys=True)
