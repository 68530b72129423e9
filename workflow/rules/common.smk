# Shared helpers of the workflow: config and samples loading, sample lists and input functions.
# Logic about variations and samples lives in analysis/core/config.py so the stages agree with the DAG.

import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from analysis.core.config import (
    TRAIN_EXECUTION_KEYS,
    check_samples,
    check_train_classes,
    class_names,
    has_shape_variations,
    is_simulation,
    load_yaml,
    sample_variations,
    training_samples,
    uncertainty_aware_inputs,
    validate as validate_document,
)
from analysis.core.errors import AnalysisError


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


try:
    UNCERTAINTY_AWARE = uncertainty_aware_inputs(TRAINING, config["train"], config, RESULTS)
except AnalysisError as err:
    sys.exit(f"error: {err}")


def training_inputs():
    """Nominal skims and friends of the training samples (in the order of TRAINING_CLASSES)."""
    return {
        "skims": [f"{RESULTS}/preselect/{sample}/nominal.root" for sample, _ in TRAINING],
        "friends": [f"{RESULTS}/friends/{sample}/nominal.root" for sample, _ in TRAINING],
    }


def uncertainty_aware_files():
    """Variation skims and friends the uncertainty-aware loss reads (none for cross entropy)."""
    return sorted({path for entry in UNCERTAINTY_AWARE for path in (entry["skim"], entry["friend"])})


def train_settings():
    """The train section without execution keys, so changing those does not retrain.

    Classes become their names: each training input's class is passed separately.
    """
    settings = {
        key: value for key, value in config["train"].items() if key not in TRAIN_EXECUTION_KEYS
    }
    settings["classes"] = class_names(config["train"]["classes"])
    if settings.get("loss") == "uncertainty_aware":
        settings["folds"] = config["friends"]["folds"]
        settings["signals"] = config["histograms"]["signals"]
    else:
        settings.pop("uncertainty_aware", None)  # irrelevant: editing it must not retrain
    return as_json(settings)


# nominal simulation the binning is derived from (not alternatives, not a data-driven process)
BINNING_SAMPLES = [
    name
    for name, sample in SAMPLES.items()
    if has_shape_variations(sample)
    and not (
        config["histograms"]["qcd"]["from_data"]
        and sample["process"] == config["histograms"]["qcd"]["process"]
    )
]


def binning_inputs():
    return {
        stage_name: [f"{RESULTS}/{stage}/{sample}/nominal.root" for sample in BINNING_SAMPLES]
        for stage_name, stage in (
            ("skims", "preselect"), ("friends", "friends"), ("scores", "scores")
        )
    }


def histogram_settings():
    """What the histogram steps read: histograms config, class order, weight variations."""
    return as_json(
        {
            "histograms": config["histograms"],
            "classes": class_names(config["train"]["classes"]),
            "weights": config["weights"],
        }
    )


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



# --- inference (fit, pulls, ranking, scan, significance, limits) ---------------------------------

INFERENCE = config.get("inference") or {}
#: a pyhf workspace from elsewhere is fitted: the stages upstream of the inference do not run
EXTERNAL = bool(INFERENCE.get("external_workspace"))
#: Settings that shape every likelihood the inference stages build (the workspace file aside).
MODEL_KEYS = ("patch", "patch_name", "measurement", "pois", "asimov", "interpolation", "fit")


def inference_workspace():
    """The workspace the inference stages fit: an external pyhf JSON workspace when configured,
    else the one this analysis builds."""
    return INFERENCE.get("external_workspace") or f"{RESULTS}/workspace/workspace.json"


def inference_inputs():
    """The workspace and, when configured, the patch applied to it."""
    inputs = {"workspace": inference_workspace()}
    if INFERENCE.get("patch"):
        inputs["patch"] = INFERENCE["patch"]
    return inputs


def inference_settings(*sections):
    """Inference settings for a stage (the model settings plus ``sections``), as JSON."""
    keys = (*MODEL_KEYS, *sections)
    return as_json({key: INFERENCE[key] for key in keys if INFERENCE.get(key) is not None})


def inference_fit():
    """fit.json once the nominal fit (a checkpoint) has run; the POIs and the parameters to rank
    are only known from it when the workspace is built by the workflow."""
    return checkpoints.inference_fit.get().output[0]


def ranking_chunks(wildcards):
    """The ranking's chunk files: the number of chunks follows from the fitted model."""
    from analysis.stats.ranking import chunk_count

    ranking = INFERENCE.get("ranking", {})
    n_chunks = chunk_count(inference_fit(), ranking.get("chunk_size", 8), ranking.get("exclude", []))
    return [f"{RESULTS}/fit/ranking/chunk_{chunk}.json" for chunk in range(n_chunks)]


def fitted_pois():
    """The POIs of the nominal fit (the configured ones, or the measurement's)."""
    return json.loads(Path(inference_fit()).read_text())["pois"]


def scan_names():
    """One 1D scan per POI, and a 2D scan named ``2d`` when there are two POIs."""
    pois = fitted_pois()
    return [*pois, "2d"] if len(pois) == 2 else list(pois)


def scan_parameters(wildcards):
    """The parameters of one scan (a POI, or both POIs for ``2d``), as command-line arguments."""
    return " ".join(fitted_pois() if wildcards.scan == "2d" else [wildcards.scan])


def scan_outputs(wildcards):
    """scan_{poi}.json for every POI, and scan2d.json with two POIs."""
    return [
        f"{RESULTS}/fit/scan2d.json" if name == "2d" else f"{RESULTS}/fit/scan_{name}.json"
        for name in scan_names()
    ]


def scan_chunks(wildcards):
    """The chunk files of one scan; their number follows from the configured grid."""
    from analysis.stats.scan import chunk_count, scan_settings

    name = getattr(wildcards, "scan", "2d")
    settings = scan_settings(INFERENCE)
    n_points = settings.points_2d**2 if name == "2d" else settings.points
    n_chunks = chunk_count(n_points, settings.chunk_size)
    return [f"{RESULTS}/fit/scan/{name}/chunk_{chunk}.json" for chunk in range(n_chunks)]


# ---- plots and report (workflow/rules/plots.smk) ----
PLOTS = f"{RESULTS}/plots"
FIT = f"{RESULTS}/fit"

#: output classes of the classifier, in network order (TRAINING_CLASSES repeats a class per sample)
CLASSES = class_names(config["train"]["classes"])

#: plots-section keys that select inputs rather than how figures look
PLOT_INPUT_KEYS = ("scans", "templates")

#: samples shown in input-feature stacks: nominal simulation (no alternative samples) and data
STACKED_SAMPLES = [name for name, sample in SAMPLES.items() if "alternative" not in sample]


def plot_settings():
    """The plots section without input selections: only these plot options are params of plot
    rules, so a restyle reruns the plot rules and nothing else."""
    return as_json({k: v for k, v in config["plots"].items() if k not in PLOT_INPUT_KEYS})


def figure(prefix, caption, category, subcategory, labels=None):
    """Outputs of one figure: the PNG registered in the report, plus the other formats."""
    png = report(
        f"{prefix}.png",
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels=labels,
    )
    return [png] + [f"{prefix}.{fmt}" for fmt in config["plots"]["formats"] if fmt != "png"]


def figure_prefix(wildcards, output):
    """A figure's path without extension, from its outputs (the PNG comes first)."""
    return str(output[0]).removesuffix(".png")


def figures(prefixes, caption, category, subcategory):
    """Outputs of several figures sharing a caption, labelled by their file name."""
    outputs = []
    for prefix in prefixes:
        labels = {"figure": prefix.rsplit("/", 1)[-1]}
        outputs += figure(prefix, caption, category, subcategory, labels)
    return outputs


def feature_plot_inputs():
    """Nominal skims and friends of the stacked samples, with each sample's process."""
    return {
        "skims": [f"{RESULTS}/preselect/{name}/nominal.root" for name in STACKED_SAMPLES],
        "friends": [f"{RESULTS}/friends/{name}/nominal.root" for name in STACKED_SAMPLES],
    }


def stack_inputs(wildcards):
    """The fitted workspace (and patch), the fit and, for our own workspace, the bin edges."""
    inputs = {**inference_inputs(), "fit": f"{FIT}/fit.json"}
    if not EXTERNAL:
        inputs["binning"] = f"{RESULTS}/histograms/binning.json"
    return inputs


def feature_blinding():
    """Blinding of the feature figures, as JSON: the histograms' signals and S/B threshold while
    the analysis is blinded, else null."""
    histograms = config["histograms"]
    if not histograms["blind"]:
        return "null"
    return as_json({"signals": histograms["signals"], "threshold": histograms["blind_threshold"]})


def stacked_processes():
    """The process of every stacked sample (``data`` for collision data)."""
    return [
        "data" if SAMPLES[name]["type"] == "data" else SAMPLES[name]["process"]
        for name in STACKED_SAMPLES
    ]


def scan_plots(wildcards):
    """Likelihood-scan figures: one per fitted POI (or per POI in plots.scans), and the contour
    when both of two POIs are shown."""
    pois = fitted_pois()
    shown = config["plots"]["scans"] or pois
    unknown = [poi for poi in shown if poi not in pois]
    if unknown:
        raise WorkflowError(
            f"config: plots.scans: {', '.join(unknown)} is not a POI of the fit ({', '.join(pois)});"
            " name fitted POIs or leave plots.scans empty for all of them"
        )
    outputs = [f"{PLOTS}/fit/scan_{poi}.png" for poi in shown]
    if len(pois) == 2 and len(shown) == 2:
        outputs.append(f"{PLOTS}/fit/contour.png")
    return outputs


def on_attempt(first):
    """A resource callable: ``first`` on the first attempt, ``n * first`` on the n-th.

    With ``--retries`` (set by the cluster profile) a job killed for memory or time is resubmitted
    with more; a local run has one attempt, so it sees ``first``.
    """
    return lambda wildcards, attempt: first * attempt

