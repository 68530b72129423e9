# Shared helpers of the workflow: the validated config and samples, sample lists, and the input,
# output and params functions of the rules, in one section per rule file (rule files hold rules
# only, as `snakemake --lint` asks). Helpers read `paths` (paths.smk) only when called.
# Logic about variations and samples lives in analysis/core/config.py so the stages agree with
# the DAG. Every config key is required by the schema: code here reads it without a default.

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError

from analysis.core.config import (
    TRAIN_EXECUTION_KEYS,
    analysis_settings,
    btag_efficiency_measured,
    check_correction_files,
    check_features,
    check_samples,
    check_weights,
    check_train_classes,
    class_names,
    has_shape_variations,
    is_remote,
    load_yaml,
    preselect_in_process,
    sample_variations,
    shape_variations,
    toy_events,
    training_samples,
    uncertainty_aware_inputs,
    validate as validate_document,
)
from analysis.core.eras import (
    MERGED,
    PER_ERA,
    check_decorrelated,
    check_sample_eras,
    era_configs,
    era_settings,
    sample_config as era_sample_config,
)
from analysis.core.errors import AnalysisError
from analysis.core.provenance import environment_sha256, git_state, sha256_of
from analysis.core.variations import NOMINAL
from analysis.selection.parts import part_name, split_files
from analysis.selection.samplefiles import local_files
from analysis.selection.samplefiles import sample_files as expand_sample_files
from analysis.selection.skim import FEATURES, INT_COLUMNS
from analysis.stats.channels import channels, era_channels
from analysis.stats.blinding import check_renamed_keys, fit_asimov, gof_data


SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"


def _load_samples():
    """The samples file and each era's config (``{}`` for one era), validated; stops with one
    line naming what is wrong."""
    try:
        check_renamed_keys(config)
        validate_document(config, SCHEMAS / "config.schema.yaml", "config")
        eras = era_configs(config, SCHEMAS / "config.schema.yaml")
        for settings in (config, *eras.values()):
            check_weights(settings["weights"])
            check_correction_files(settings)
        check_decorrelated(config)
        fit_asimov(config)  # refuses fitting data while blinded
        gof_data(config)  # refuses testing data while blinded
        samples = load_yaml(config["samples"])
        validate_document(samples, SCHEMAS / "samples.schema.yaml", config["samples"])
        check_samples(samples["samples"], config["samples"])
        check_sample_eras(samples["samples"], list(eras), config["samples"])
        check_train_classes(samples["samples"], config["train"]["classes"])
        check_features(config["train"]["features"], [*FEATURES, *INT_COLUMNS])
        gof_variables = config["gof"]["variables"] or []
        check_features(gof_variables, [*FEATURES, *INT_COLUMNS], key="gof.variables")
    except AnalysisError as err:
        sys.exit(f"error: {err}")
    return samples["samples"], eras


SAMPLES, ERA_CONFIGS = _load_samples()
#: what the histograms and workspace need of the eras (None for one era; analysis/core/eras.py)
ERAS = era_settings(config, ERA_CONFIGS)


def sample_config(name):
    """The config a sample is processed with: its era's, or the analysis config."""
    return era_sample_config(config, ERA_CONFIGS, SAMPLES[name])


def variations_of(name):
    """The variations of a sample's skims, friends and scores: its era's shape variations for
    nominal simulation, the nominal alone for the others."""
    return sample_variations(SAMPLES[name], sample_config(name)["variations"])


#: Priority of the rules from the toy data to the statistical results (the others, the figures,
#: keep Snakemake's default 0): where a figure and the next step of the analysis wait for the same
#: cores, the analysis goes first and the figures fill the cores it leaves free.
ANALYSIS_CHAIN = 1

TOY_SAMPLES = [name for name, sample in SAMPLES.items() if "toy" in sample]
VARIED_SAMPLES = [name for name, sample in SAMPLES.items() if has_shape_variations(sample)]
NOMINAL_ONLY_SAMPLES = [name for name in SAMPLES if name not in VARIED_SAMPLES]


def _sample_parts():
    """The files of each preselection job of the samples with more than preselect.files_per_job
    files (the others run as one job)."""
    per_job = config["preselect"]["files_per_job"]
    parts = {}
    for name, sample in SAMPLES.items():
        if not per_job or "toy" in sample:
            continue
        try:
            jobs = split_files(expand_sample_files(name, sample["files"]), per_job)
        except AnalysisError as err:
            sys.exit(f"error: {err}")
        if len(jobs) > 1:
            parts[name] = {part_name(index): files for index, files in enumerate(jobs)}
    return parts


#: sample -> part -> its files, for samples split into several preselection jobs
SAMPLE_PARTS = _sample_parts()


def _variation_sets():
    """The distinct variation sets of nominal simulation, each with its samples.

    A rule's outputs are fixed, so each set of variation names (eras may differ, in their JES
    sources for one) gets its own preselection, merge, friend and score rules: the first set
    keeps the plain rule names, every other is suffixed with the era of its first sample."""
    sets = {}
    for name in VARIED_SAMPLES:
        variations = tuple(variations_of(name))
        if variations not in sets:
            suffix = f"_{SAMPLES[name]['era']}" if sets else ""
            sets[variations] = SimpleNamespace(suffix=suffix, variations=list(variations),
                                               samples=[])  # fmt: skip
        sets[variations].samples.append(name)
    if not sets:  # the rules exist without nominal simulation: the nominal-only ones derive
        return [SimpleNamespace(suffix="", variations=shape_variations(config["variations"]),
                                samples=[])]  # fmt: skip
    return list(sets.values())


#: the shape variation sets of nominal simulation (other samples have the nominal only)
VARIATION_SETS = _variation_sets()


def unsplit(samples):
    """A wildcard constraint: those of ``samples`` that run as one preselection job."""
    return alternatives([name for name in samples if name not in SAMPLE_PARTS])


def split(samples):
    """A wildcard constraint: those of ``samples`` split into preselection parts."""
    return alternatives([name for name in samples if name in SAMPLE_PARTS])


# --- any rule ------------------------------------------------------------------------------------


def as_json(data):
    """Serialise settings for a command line; sorted keys keep params stable across runs."""
    return json.dumps(data, sort_keys=True)


def alternatives(names):
    """A wildcard constraint matching exactly these sample names."""
    return "|".join(names) if names else "(?!x)x"


def on_attempt(first):
    """A resource callable: ``first`` on the first attempt, ``n * first`` on the n-th.

    With ``--retries`` (set by the cluster profile) a job killed for memory or time is resubmitted
    with more; a local run has one attempt, so it sees ``first``.
    """
    return lambda wildcards, attempt: first * attempt


def variation_paths(pattern, sample):
    """``pattern`` (a per-sample, per-variation path) for every variation of a sample."""
    return [
        pattern.format(sample=sample, variation=variation)
        for variation in variations_of(sample)
    ]


def of_sample(pattern):
    """An input function: ``pattern`` for every variation of the job's sample."""
    return lambda wildcards: variation_paths(pattern, wildcards.sample)


def every_sample(pattern):
    """``pattern`` for every variation of every sample (a stage's target)."""
    return [path for sample in SAMPLES for path in variation_paths(pattern, sample)]


def nominal(pattern, samples):
    """``pattern`` for the nominal of each of ``samples``."""
    return [pattern.format(sample=sample, variation=NOMINAL) for sample in samples]


def variation_outputs(pattern, variations):
    """Outputs of a per-sample job: ``pattern`` for each of ``variations``."""
    return expand(pattern, variation=variations, allow_missing=True)


# --- selection.smk -------------------------------------------------------------------------------


def sample_files(wildcards):
    """Input files of a sample: its NanoAOD files (a list, glob or list file, expanded by
    analysis/selection/samplefiles.py), or the toy file the workflow generates."""
    sample = SAMPLES[wildcards.sample]
    if "toy" in sample:
        return [paths.toydata.format(sample=wildcards.sample)]
    try:
        return expand_sample_files(wildcards.sample, sample["files"])
    except AnalysisError as err:
        sys.exit(f"error: {err}")


def preselect_threads(wildcards):
    """Cores of a preselection job: ``preselect.threads`` dask workers, or one for a toy sample
    that the job runs in its own process (one chunk), so that the other cores take the next
    samples instead of idling."""
    events = toy_events(SAMPLES[wildcards.sample], config["toydata"]["scale"])
    settings = config["preselect"]
    if events is not None:
        if preselect_in_process(events, settings["chunksize"], settings["dask"]["mode"]):
            return 1
    return settings["threads"]


def part_files(wildcards):
    """Input files of one part of a split sample."""
    return SAMPLE_PARTS[wildcards.sample][wildcards.part]


def job_files(wildcards):
    """The files a preselection job reads: its part's for a split sample, else the sample's
    (remote URLs included, in order)."""
    return part_files(wildcards) if hasattr(wildcards, "part") else sample_files(wildcards)


def local_job_files(wildcards):
    """:func:`job_files` that Snakemake can watch, the rule's inputs: remote files are read by
    the job alone (Snakemake would look for a local file of that name)."""
    return local_files(job_files(wildcards))


def part_outputs(variations):
    """Named outputs of a part job: one skim and one cutflow per variation."""
    return {
        "skims": variation_outputs(paths.skim_part, variations),
        "cutflows": variation_outputs(paths.cutflow_part, variations),
    }


def merge_inputs(wildcards):
    """The parts' skims and cutflows of a split sample, in part order."""
    return [
        pattern.format(sample=wildcards.sample, part=part, variation=variation)
        for part in SAMPLE_PARTS[wildcards.sample]
        for variation in variations_of(wildcards.sample)
        for pattern in (paths.skim_part, paths.cutflow_part)
    ]


def merge_part_dirs(wildcards):
    """The part directories of a split sample, in part order."""
    return [
        os.path.dirname(paths.skim_part.format(sample=wildcards.sample, part=part, variation=NOMINAL))
        for part in SAMPLE_PARTS[wildcards.sample]
    ]


def merge_variations(wildcards):
    """The variations of a split sample's skims."""
    return variations_of(wildcards.sample)


def certified_lumi_file(wildcards):
    """The certified-luminosity JSON, an input of collision-data samples when configured."""
    certified = sample_config(wildcards.sample)["selection"]["certified_lumi"]["file"]
    is_data = SAMPLES[wildcards.sample]["type"] == "data"
    return [certified] if certified and is_data and not is_remote(certified) else []


#: The era name of the b-tagging efficiency map of an analysis of one era.
SINGLE_ERA = "analysis"


def btag_efficiency_map(name):
    """The b-tagging efficiency map the workflow measures for a simulated sample's era, or None
    (``weights.corrections.btag.efficiency.file`` is not ``measured``)."""
    if SAMPLES[name]["type"] != "mc" or not btag_efficiency_measured(sample_config(name)["weights"]):
        return None
    return paths.btag_efficiency.format(era=SAMPLES[name].get("era") or SINGLE_ERA)


def preselect_corrections(wildcards):
    """The official-format correction files, inputs of simulated samples' preselection (so a new
    file reruns it; their presence is checked when the workflow starts), and the b-tagging
    efficiency map when the workflow measures it."""
    if SAMPLES[wildcards.sample]["type"] != "mc":
        return []
    measured = btag_efficiency_map(wildcards.sample)
    return check_correction_files(sample_config(wildcards.sample)) + ([measured] if measured else [])


def preselect_settings(wildcards):
    """The sections the preselection reads, of the sample's era (a measured b-tagging efficiency
    map named by its path)."""
    settings = sample_config(wildcards.sample)
    sections = {key: settings[key] for key in ("branches", "selection", "variations", "weights")}
    measured = btag_efficiency_map(wildcards.sample)
    if measured:
        btag = sections["weights"]["corrections"]["btag"]
        efficiency = {**btag["efficiency"], "file": measured}
        corrections = {**sections["weights"]["corrections"], "btag": {**btag, "efficiency": efficiency}}
        sections["weights"] = {**sections["weights"], "corrections": corrections}
    return as_json(sections)


def btag_efficiency_files(wildcards):
    """The input files of the nominal simulated samples of an era (``analysis``: all samples),
    remote URLs included."""
    era = None if wildcards.era == SINGLE_ERA else wildcards.era
    files = []
    for name, sample in SAMPLES.items():
        if has_shape_variations(sample) and sample.get("era") == era:
            files += sample_files(SimpleNamespace(sample=name))
    return files


def btag_efficiency_inputs(wildcards):
    """:func:`btag_efficiency_files` that Snakemake can watch (the local ones), and the era's
    correction files (the jet ID, JER and tau_h energy scale shape the counted jets)."""
    return {
        "files": local_files(btag_efficiency_files(wildcards)),
        "corrections": check_correction_files(btag_efficiency_config(wildcards)),
    }


def btag_efficiency_config(wildcards):
    """The config of the era whose b-tagging efficiency map is measured."""
    era = None if wildcards.era == SINGLE_ERA else wildcards.era
    return era_sample_config(config, ERA_CONFIGS, {"era": era} if era else {})


def btag_efficiency_settings(wildcards):
    """What the b-tagging efficiency measurement reads of the era's config."""
    settings = btag_efficiency_config(wildcards)
    sections = ("branches", "selection", "variations", "weights")
    return as_json({key: settings[key] for key in sections})


#: a part's wildcard: its four-digit index (analysis/selection/parts.py)
PART = r"\d{4}"
#: the preselection of one job (rules preselect_sample and preselect_part)
PRESELECT_COMMAND = (
    "python -m analysis.selection.preselect --sample {wildcards.sample} "
    "--sample-spec {params.sample:q} --files {params.files:q} --settings {params.settings:q} "
    "--output-dir {params.output_dir:q} --chunksize {resources.chunksize} "
    "--workers {threads} --dask-mode {resources.dask_mode} "
    "--dask-address {resources.dask_address} --dask-jobs {resources.dask_jobs} 2> {log:q}"
)


def preselect_inputs():
    """Inputs of a preselection job: its local files, the certified-luminosity JSON of data,
    the correction files."""
    return {
        "files": local_job_files,
        "certified_lumi": certified_lumi_file,
        "corrections": preselect_corrections,
    }


def preselect_params():
    """Params of a preselection job: every file it reads (remote included), the sample's entry,
    what it reads of its era's config, its output directory."""
    return {
        "files": job_files,
        "sample": lambda wildcards: as_json(SAMPLES[wildcards.sample]),
        "settings": preselect_settings,
        "output_dir": lambda wildcards, output: os.path.dirname(output.skims[0]),
    }


def preselect_resources():
    """Memory and time of a preselection job, and how it runs (not params: switching the dask
    mode or chunk size does not change the skims, so it must not rerun finished samples)."""
    settings = config["preselect"]
    return {
        "mem_mb": on_attempt(settings["mem_mb"]),
        "runtime": on_attempt(60),
        "chunksize": settings["chunksize"],
        "dask_mode": settings["dask"]["mode"],
        "dask_address": settings["dask"]["address"] or "none",
        "dask_jobs": settings["dask"]["jobs"],
    }


def preselect_outputs(variations):
    """Named outputs of a preselection job: one skim and one cutflow per variation."""
    return {
        "skims": variation_outputs(paths.skim, variations),
        "cutflows": variation_outputs(paths.cutflow, variations),
    }


def toy_settings(wildcards):
    """Only what shapes this toy sample's file, so unrelated config edits do not regenerate it;
    pseudo-data are drawn from the simulated samples of their own era, for its luminosity."""
    sample = SAMPLES[wildcards.sample]
    era = sample.get("era")
    relevant = (
        [name for name in SAMPLES if SAMPLES[name].get("era") == era]
        if sample["type"] == "data"
        else [wildcards.sample]
    )
    settings = sample_config(wildcards.sample)
    return as_json(
        {
            "samples": {name: SAMPLES[name] for name in relevant if "toy" in SAMPLES[name]},
            "toydata": settings["toydata"],
            "lumi": settings["lumi"],
            "variations": settings["variations"],
            "tau_id_sf": settings["weights"]["tau_id_sf"],
        }
    )


def tau_id_correction_file(wildcards):
    """The tau_h ID scale-factor file, an input of the friend trees when configured."""
    tau_id_sf = sample_config(wildcards.sample)["weights"]["tau_id_sf"]
    return [tau_id_sf["file"]] if tau_id_sf else []


def friend_settings(wildcards):
    """What the friend trees read: the sample's era's luminosity and weights, the folds."""
    settings = sample_config(wildcards.sample)
    return as_json(
        {"lumi": settings["lumi"], "weights": settings["weights"], "folds": config["friends"]["folds"]}
    )


# --- ml.smk --------------------------------------------------------------------------------------

#: (sample, class) of every training sample
TRAINING = training_samples(SAMPLES, config["train"]["classes"])
#: the class of each training sample, in the order of TRAINING (a class repeats per sample)
TRAINING_CLASSES = [class_name for _, class_name in TRAINING]
#: output classes of the classifier, in network order
CLASSES = class_names(config["train"]["classes"])


def fold_files(pattern):
    """``pattern`` (a per-fold path of paths.smk) for every fold."""
    return expand(pattern, fold=range(config["friends"]["folds"]))


def training_inputs():
    """Nominal skims and friends of the training samples (in the order of TRAINING_CLASSES)."""
    samples = [sample for sample, _ in TRAINING]
    return {"skims": nominal(paths.skim, samples), "friends": nominal(paths.friend, samples)}


def uncertainty_aware_entries():
    """The event sets the uncertainty-aware loss reads (none for cross entropy); a systematic
    that is neither a shape nor a weight variation stops the workflow with one line."""
    try:
        configs = [sample_config(sample) for sample, _ in TRAINING]
        return uncertainty_aware_inputs(
            TRAINING, config["train"], configs, paths.skim, paths.friend
        )
    except AnalysisError as err:
        sys.exit(f"error: {err}")


def uncertainty_aware_files():
    """Variation skims and friends the uncertainty-aware loss reads (none for cross entropy)."""
    entries = uncertainty_aware_entries()
    return sorted({path for entry in entries for path in (entry["skim"], entry["friend"])})


def train_settings(diagnostics=False):
    """The train section without execution keys, so changing those does not retrain; the
    diagnostics' own keys only with ``diagnostics``, so changing them does not retrain either.

    Classes become their names: each training input's class is passed separately.
    """
    train = config["train"]
    skipped = TRAIN_EXECUTION_KEYS if diagnostics else (*TRAIN_EXECUTION_KEYS, "taylor_events")
    settings = {key: value for key, value in train.items() if key not in skipped}
    settings["classes"] = CLASSES
    settings["folds"] = config["friends"]["folds"]  # the validation split divides the fold out
    if train["loss"] == "uncertainty_aware":
        settings["signals"] = config["histograms"]["signals"]
    else:
        del settings["uncertainty_aware"]  # irrelevant: editing it must not retrain
    return as_json(settings)


# --- stats.smk: histograms and workspace ---------------------------------------------------------

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
    """Nominal skims, friends and scores of the samples the binning is derived from."""
    return {
        name: nominal(pattern, BINNING_SAMPLES)
        for name, pattern in (
            ("skims", paths.skim), ("friends", paths.friend), ("scores", paths.scores)
        )
    }


#: `--unblind` for the stages the blinding switch changes (analysis/stats/blinding.py), else ""
UNBLIND_FLAG = "--unblind" if config["unblind"] else ""


def _histogram_settings():
    histograms = config["histograms"] if ERAS is None else {**config["histograms"], "eras": ERAS}
    return {"histograms": histograms, "classes": CLASSES}


def histogram_settings():
    """What the histogram steps read: histograms config (with the eras' settings when there are
    several) and class order."""
    return as_json(_histogram_settings())


def sample_histogram_settings(wildcards):
    """:func:`histogram_settings` and the weights section of the sample's era, which names the
    weight variations its friend trees carry."""
    return as_json({**_histogram_settings(), "weights": sample_config(wildcards.sample)["weights"]})


def sample_eras():
    """``--eras`` with the era of every sample, in the order of SAMPLES (several eras), else ""."""
    return "" if ERAS is None else "--eras " + " ".join(SAMPLES[name]["era"] for name in SAMPLES)


def workspace_settings():
    """What the workspace reads: the workspace and histograms config, and the eras' settings."""
    settings = {"workspace": config["workspace"], "histograms": config["histograms"]}
    return as_json(settings if ERAS is None else {**settings, "eras": ERAS})


def analysis_channels():
    """The channels of the histograms and workspace: one per era of each configured one with
    per-era channels, else the configured ones."""
    chans = channels(config["histograms"], CLASSES)
    if ERAS is not None and ERAS["channels"] == PER_ERA:
        chans = era_channels(chans, ERAS["names"])
    return chans


# --- stats.smk: inference (fit, pulls, ranking, scan, significance, limits) ----------------------

#: the inference section, its `asimov` resolved from `unblind` (analysis/stats/blinding.py)
INFERENCE = {**config["inference"], "asimov": fit_asimov(config)}
#: a pyhf workspace from elsewhere is fitted: the stages upstream of the inference do not run
EXTERNAL = bool(INFERENCE["external_workspace"])
#: Settings that shape every likelihood the inference stages build (the workspace file aside).
MODEL_KEYS = ("patch", "patch_name", "measurement", "pois", "asimov", "interpolation", "fit")


def inference_inputs():
    """The workspace the inference stages fit (an external pyhf JSON workspace when configured,
    else the one this analysis builds) and, when configured, the patch applied to it."""
    inputs = {"workspace": INFERENCE["external_workspace"] or paths.workspace}
    if INFERENCE["patch"]:
        inputs["patch"] = INFERENCE["patch"]
    return inputs


def inference_settings(*sections):
    """Inference settings for a stage (the model settings plus ``sections``), as JSON; unset
    (null) settings are left out."""
    keys = (*MODEL_KEYS, *sections)
    return as_json({key: INFERENCE[key] for key in keys if INFERENCE[key] is not None})


def inference_fit():
    """fit.json once the nominal fit (a checkpoint) has run; the POIs and the parameters to rank
    are only known from it when the workspace is built by the workflow."""
    return checkpoints.inference_fit.get().output[0]


def ranking_chunks(wildcards):
    """The ranking's chunk files: the number of chunks follows from the fitted model."""
    fit = inference_fit()  # first: until the fit exists, the DAG needs no statistics modules
    from analysis.stats.ranking import chunk_count

    ranking = INFERENCE["ranking"]
    n_chunks = chunk_count(fit, ranking["chunk_size"], ranking["exclude"])
    return expand(paths.ranking_chunk, chunk=range(n_chunks))


def fitted_pois():
    """The POIs of the nominal fit (the configured ones, or the measurement's)."""
    fit = inference_fit()  # first: until the fit exists, the DAG needs no statistics modules
    from analysis.stats.results import FitResults

    return list(FitResults.read(fit).pois)


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
        paths.scan2d if name == "2d" else paths.scan.format(scan=name) for name in scan_names()
    ]


def scan_chunks(wildcards):
    """The chunk files of one scan; their number follows from the configured grid."""
    from analysis.stats.chunks import chunk_count
    from analysis.stats.scan import scan_settings

    name = getattr(wildcards, "scan", "2d")
    settings = scan_settings(INFERENCE)
    n_points = settings.points_2d**2 if name == "2d" else settings.points
    n_chunks = chunk_count(n_points, settings.chunk_size)
    return expand(paths.scan_chunk, scan=name, chunk=range(n_chunks))


# --- plots.smk -----------------------------------------------------------------------------------

#: plots-section keys that select inputs rather than how figures look
PLOT_INPUT_KEYS = ("scans", "templates")

#: samples shown in input-feature stacks: nominal simulation (no alternative samples) and data
STACKED_SAMPLES = [name for name, sample in SAMPLES.items() if "alternative" not in sample]


def plot_settings():
    """The plots section without input selections: only these plot options are params of plot
    rules, so a restyle reruns the plot rules and nothing else. A params function, as labels hold
    mathtext braces (``p_{T}``) that Snakemake would expand as wildcards in a params string."""
    settings = as_json({k: v for k, v in config["plots"].items() if k not in PLOT_INPUT_KEYS})
    return lambda wildcards: settings


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


def per_class_figures(pattern, caption, category, subcategory):
    """One figure per classifier class (``pattern`` has a ``{name}``), labelled by file name."""
    outputs = []
    for name in CLASSES:
        prefix = pattern.format(name=name)
        outputs += figure(prefix, caption, category, subcategory, {"figure": Path(prefix).name})
    return outputs


def feature_plot_inputs():
    """Nominal skims and friends of the stacked samples."""
    return {
        "skims": nominal(paths.skim, STACKED_SAMPLES),
        "friends": nominal(paths.friend, STACKED_SAMPLES),
    }


def stack_inputs(wildcards):
    """The fitted workspace (and patch), the fit and, for our own workspace, the bin edges."""
    inputs = {**inference_inputs(), "fit": paths.fit}
    if not EXTERNAL:
        inputs["binning"] = paths.binning
    return inputs


def channel_axes():
    """What the x axis of each channel shows, as JSON, for the titles of the stacks and templates:
    ``{"nn": class}`` for a classifier category, ``{"observable": column}`` for a control region
    (nothing for an external workspace, drawn by bin index)."""
    if EXTERNAL:
        return as_json({})
    return as_json(
        {
            channel.name: (
                {"nn": CLASSES[channel.category]}
                if channel.category is not None
                else {"observable": channel.observable}
            )
            for channel in analysis_channels()
        }
    )


def feature_blinding():
    """Blinding of the feature figures, as JSON: the histograms' signals and S/B threshold while
    the analysis is blinded, else null."""
    histograms = config["histograms"]
    if config["unblind"]:
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
            f"config: plots.scans: {', '.join(unknown)} is not a POI of the fit "
            f"({', '.join(pois)}); name fitted POIs or leave plots.scans empty for all of them"
        )
    outputs = [f"{paths.plots.scan.format(scan=poi)}.png" for poi in shown]
    if len(pois) == 2 and len(shown) == 2:
        outputs.append(f"{paths.plots.contour}.png")
    return outputs


# --- stats.smk: goodness of fit of the input variables (not part of `all`) ----------------------

#: the gof section, its variables (null: the training features) and data resolved; blinded,
#: observed data of a control region are tested only where no signal hides
GOF = {
    **config["gof"],
    "variables": config["gof"]["variables"] or config["train"]["features"],
    "data": gof_data(config),
    "blinded": not config["unblind"],
}


def gof_settings():
    """What a goodness-of-fit job reads: the tests, and how the analysis builds its model."""
    inference = {key: INFERENCE[key] for key in ("interpolation", "fit", "refits")}
    return as_json(
        {
            "gof": GOF,
            "histograms": config["histograms"],
            "workspace": config["workspace"],
            "inference": inference,
            # a test's one channel sums the eras, as merged channels do
            "eras": None if ERAS is None else {**ERAS, "channels": MERGED},
        }
    )


def gof_manifest():
    """Every sample's entry, its era and that era's weights section, and its skim, weight friend
    and scores per variation, as JSON."""
    patterns = (paths.skim, paths.friend, paths.scores)
    return as_json(
        {
            name: {
                "spec": SAMPLES[name],
                "era": SAMPLES[name].get("era"),
                "weights": sample_config(name)["weights"],
                "files": {
                    variation: [p.format(sample=name, variation=variation) for p in patterns]
                    for variation in variations_of(name)
                },
            }
            for name in SAMPLES
        }
    )


def gof_chunks():
    """The chunk files of the goodness-of-fit tests (their number follows from the config)."""
    from analysis.stats.chunks import chunk_count
    from analysis.stats.input_gof import tests_of

    n_tests = len(tests_of(GOF["variables"], GOF["pairs"]))
    return expand(paths.gof_chunk, chunk=range(chunk_count(n_tests, GOF["chunk_size"])))

# --- provenance.smk ------------------------------------------------------------------------------
# versions.json is refreshed when one of these changes (Snakemake reruns a job whose params
# changed), not with threads, memory or chunk sizes (analysis.core.config.EXECUTION_KEYS).


def code_version(wildcards):
    """The git state of the workflow's checkout as JSON (null without git or a checkout). Only
    whether tracked files differ is recorded, not how: editing a dirty tree reruns nothing."""
    state = git_state(workflow.basedir)
    return as_json(state._asdict() if state else None)


def environment_version(wildcards):
    """A digest of every installed package and its version."""
    return environment_sha256()


def config_version(wildcards):
    """A digest of the config without its execution settings, and of the samples it names."""
    return sha256_of({"config": analysis_settings(config), "samples": SAMPLES})
