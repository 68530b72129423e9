"""Config and samples helpers shared by the Snakefile and the stages (no heavy imports here).

The names of shape and weight variations are derived from the config in one place, so the
workflow's file names and the stages' outputs cannot drift apart.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from analysis.core.errors import AnalysisError
from analysis.core.variations import NOMINAL, both, names, sources

#: Source of each object-level shape variation -> the ``variations`` key that switches it on.
SHAPE_SOURCES = {"tau_es": "tau_es", "jet_es": "jet_es", "met_uncl": "met_unclustered"}


def load_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file, with one clear line when it is missing or malformed."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found; check the path in the config") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise AnalysisError(f"{path}:{where} is not valid YAML; fix the syntax") from None


def validate(document: Any, schema_path: str | os.PathLike[str], source: str) -> None:
    """Validate ``document`` against a JSON schema (YAML file), raising one clear line.

    Args:
        document: the loaded config or samples mapping.
        schema_path: the schema file under ``workflow/schemas/``.
        source: the file the document came from, named in the error.
    """
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise AnalysisError(
            f"{source}: key '{key}': {error.message}; see config/README.md for allowed values"
        )


def shape_variations(variations: Mapping[str, Any]) -> list[str]:
    """Names of the skims the preselection writes for a nominal MC sample, nominal first: the
    built-in shifts (``tau_es`` also from a TAU POG file, ``variations.tau_es_correction``), then
    ``jer`` and one ``jes_<source>`` per official-format JES source.

    Raises:
        AnalysisError: ``tau_es`` given both ways.
    """
    if variations["tau_es"] and variations.get("tau_es_correction"):
        raise AnalysisError(
            "config: variations.tau_es and variations.tau_es_correction are both set; the TAU "
            "POG file gives the tau_h energy scale and its uncertainty: set tau_es: null"
        )
    enabled = [source for source, key in SHAPE_SOURCES.items() if variations[key]]
    if variations.get("tau_es_correction"):
        enabled.insert(0, "tau_es")
    if variations.get("jer"):
        enabled.append("jer")
    jes = variations.get("jes_sources")
    enabled += [f"jes_{source}" for source in (jes["sources"] if jes else [])]
    return [NOMINAL] + [name for source in enabled for name in names(source)]


def active_weight_variations(weights: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The weight variations in use; a variation set to null in the config is switched off.

    A variation that replaces a factor of the nominal weight names that factor's skim column,
    ``nominal_column``: a branch triple's ``w_<name>``. The official-format corrections of
    ``weights.corrections`` are included as ``{"correction": True}``: the preselection computes
    their skim columns ``w_<name>`` (the nominal column of all their variations) and
    ``w_<variation>_{up,down}`` (no NanoAOD branch).
    """
    variations = {
        name: {**spec, "nominal_column": f"w_{name}"} if spec.get("nominal") else spec
        for name, spec in weights["variations"].items()
        if spec
    }
    for name, spec in (weights.get("corrections") or {}).items():
        if spec:
            for variation in correction_variations(name, spec):
                variations[variation] = {"correction": True, "nominal_column": f"w_{name}"}
    return variations


#: The b-tagging weight's variation of the light-jet scale factor alone, when the b/c scale
#: factor's uncertainty is split into sources (``weights.corrections.btag.sources``).
BTAG_LIGHT = "btag_light"


def correction_variations(name: str, spec: Mapping[str, Any]) -> list[str]:
    """The up/down variations of a weight correction: its own name, or for the b-tagging weight
    with ``sources`` (the BTV POG's split uncertainty) one per source of the b/c scale factor,
    ``btag_<source>``, and :data:`BTAG_LIGHT` for the light-jet scale factor."""
    sources = spec.get("sources") if name == "btag" else None
    if not sources:
        return [name]
    return [*(f"{name}_{source}" for source in sources), BTAG_LIGHT]


def nominal_weight_columns(weights: Mapping[str, Any]) -> list[str]:
    """The skim columns multiplied into the nominal event weight: the nominal of every branch
    variation that has one and of every weight correction, once each."""
    columns = [
        spec["nominal_column"]
        for spec in active_weight_variations(weights).values()
        if "nominal_column" in spec
    ]
    return list(dict.fromkeys(columns))


def check_weights(weights: Mapping[str, Any]) -> None:
    """A weight correction does not share its name with a branch variation or the toy tau_h ID
    scale factor (both would write the same columns)."""
    for name, spec in (weights.get("corrections") or {}).items():
        if not spec:
            continue
        key = f"weights.corrections.{name}"
        if weights["variations"].get(name):
            raise AnalysisError(
                f"config: key '{key}': weights.variations.{name} is also set; set one of them "
                "to null (the correction replaces the branches)"
            )
        if name == "tau_id" and weights.get("tau_id_sf"):
            raise AnalysisError(
                f"config: key '{key}': weights.tau_id_sf is also set; set one of them to null"
            )


#: A correction file the workflow measures itself (``weights.corrections.btag.efficiency.file``:
#: the b-tagging efficiency map, :mod:`analysis.selection.btag_efficiency`).
MEASURED = "measured"


def btag_efficiency_measured(weights: Mapping[str, Any]) -> bool:
    """Whether the config asks the workflow to measure the b-tagging efficiency map."""
    btag = (weights.get("corrections") or {}).get("btag")
    return bool(btag) and btag["efficiency"].get("file") == MEASURED


def correction_files(config: Mapping[str, Any]) -> dict[str, str | None]:
    """Every official-format correction file the config names, by config key (``None``: unset).

    The keys: ``weights.corrections.<name>`` (and ``.efficiency`` of ``btag``),
    ``variations.tau_es_correction``, ``variations.jer``, ``variations.jes_sources`` and
    ``selection.jet.id_correction``.
    """
    specs = {
        f"weights.corrections.{name}": spec
        for name, spec in (config["weights"].get("corrections") or {}).items()
    }
    btag = specs.get("weights.corrections.btag")
    if btag:
        specs["weights.corrections.btag.efficiency"] = btag["efficiency"]
    specs["variations.tau_es_correction"] = config["variations"].get("tau_es_correction")
    specs["variations.jer"] = config["variations"].get("jer")
    specs["variations.jes_sources"] = config["variations"].get("jes_sources")
    specs["selection.jet.id_correction"] = config["selection"]["jet"].get("id_correction")
    return {key: spec.get("file") for key, spec in specs.items() if spec}


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``root://``, ``https://``): read by the job, not watched by
    Snakemake (which would look for a local file of that name)."""
    return "://" in path


def check_correction_files(config: Mapping[str, Any]) -> list[str]:
    """The local correction files of the config; one clear line for a file that is unset or
    missing (remote ``scheme://`` paths are left to the reader)."""
    paths = []
    for key, path in correction_files(config).items():
        if key == "weights.corrections.btag.efficiency" and path == MEASURED:
            continue  # made by the workflow's btag_efficiency rule
        if not path:
            raise AnalysisError(
                f"config: key '{key}.file' is not set; point it at the correction file (or set "
                f"{key} to null to switch the correction off)"
            )
        if is_remote(path):
            continue
        if not Path(path).is_file():
            raise AnalysisError(
                f"config: key '{key}.file': {path} not found; point it at your copy of the file"
            )
        paths.append(path)
    return paths


def correction_columns(weights: Mapping[str, Any]) -> list[str]:
    """Skim columns the preselection computes from ``weights.corrections``: each correction's
    nominal ``w_<name>`` and its variations' ``w_<variation>_{up,down}``."""
    columns = []
    for name, spec in (weights.get("corrections") or {}).items():
        if spec:
            columns.append(f"w_{name}")
            columns += [f"w_{variation}_{direction}"
                        for variation in correction_variations(name, spec)
                        for direction in ("up", "down")]  # fmt: skip
    return columns


def weight_columns(weights: Mapping[str, Any]) -> dict[str, str | tuple[str, int]]:
    """Skim columns carrying the raw per-event weight inputs, mapped to their NanoAOD source.

    A source is a branch name, or (array branch, index) for weight arrays like LHEScaleWeight.
    """
    columns: dict[str, str | tuple[str, int]] = {"w_gen": weights["generator"]}
    for name, spec in active_weight_variations(weights).items():
        if spec.get("correction"):
            continue  # computed in the preselection, see correction_columns
        if "array" in spec:
            columns[f"w_{name}_up"] = (spec["array"], spec["up"])
            columns[f"w_{name}_down"] = (spec["array"], spec["down"])
        else:
            if spec.get("nominal"):
                columns[f"w_{name}"] = spec["nominal"]
            columns[f"w_{name}_up"] = spec["up"]
            columns[f"w_{name}_down"] = spec["down"]
    return columns


def weight_variation_columns(weights: Mapping[str, Any]) -> list[str]:
    """Names of the weight-variation columns in a friend tree (``weight_<name>_<up|down>``)."""
    names = list(active_weight_variations(weights))
    if weights.get("tau_id_sf"):
        names.append("tau_id")
    return [f"weight_{name}_{direction}" for name in names for direction in ("up", "down")]


def is_simulation(sample: Mapping[str, Any]) -> bool:
    """True for simulated samples (they carry generator weights and gen matching)."""
    return sample["type"] == "mc"


def has_shape_variations(sample: Mapping[str, Any]) -> bool:
    """Object-level variations exist for nominal simulation only, not data or alternatives."""
    return is_simulation(sample) and "alternative" not in sample


def toy_events(sample: Mapping[str, Any], scale: float) -> int | None:
    """Events the toy generator writes for a simulated sample (``toy.events`` times
    ``toydata.scale``, at least one); None for pseudo-data or a sample of real files."""
    events = sample.get("toy", {}).get("events")
    return None if events is None else max(1, round(events * scale))


def preselect_in_process(events: int, chunksize: int, dask_mode: str) -> bool:
    """Whether the preselection runs an input in its job's own process: one chunk with
    ``dask.mode: local``, where a local cluster would add its start-up and run nothing in
    parallel."""
    return dask_mode == "local" and events <= chunksize


def sample_variations(sample: Mapping[str, Any], variations: Mapping[str, Any]) -> list[str]:
    """The skims one sample gets: all shape variations for nominal MC, else nominal only."""
    return shape_variations(variations) if has_shape_variations(sample) else [NOMINAL]


def check_samples(samples: Mapping[str, Mapping[str, Any]], source: str) -> None:
    """Cross-checks the schema cannot express: alternatives point at a nominal MC sample."""
    for name, sample in samples.items():
        alternative = sample.get("alternative")
        if alternative is None:
            continue
        target = samples.get(alternative["of"])
        if target is None or not has_shape_variations(target):
            raise AnalysisError(
                f"{source}: sample '{name}': alternative.of='{alternative['of']}' is not a "
                "nominal simulated sample in this file; name one that is"
            )
        if target.get("process") != sample.get("process"):
            raise AnalysisError(
                f"{source}: sample '{name}': process '{sample.get('process')}' differs from "
                f"that of '{alternative['of']}'; an alternative sample models the same process"
            )


#: Keys of the ``train`` section that only say how a job runs, not what it computes.
TRAIN_EXECUTION_KEYS = ("threads", "mem_mb", "runtime", "gpus")

#: Config keys (dotted paths) that only say where results go and how jobs run (threads, memory,
#: chunking, dask), not what they compute: left out of the config digest of ``versions.json``.
EXECUTION_KEYS = (
    "results",
    "preselect.chunksize", "preselect.files_per_job", "preselect.threads", "preselect.mem_mb",
    "preselect.dask",
    *(f"train.{key}" for key in TRAIN_EXECUTION_KEYS),
    "inference.ranking.chunk_size", "inference.scan.chunk_size",
)  # fmt: skip


def analysis_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without :data:`EXECUTION_KEYS`: what the results depend on."""
    settings = copy.deepcopy(dict(config))
    for key in EXECUTION_KEYS:
        *parents, name = key.split(".")
        section = settings
        for parent in parents:
            section = section.get(parent, {})
        section.pop(name, None)
    return settings


def check_features(
    features: list[str], columns: Sequence[str], key: str = "train.features"
) -> None:
    """Every entry of ``features`` (the config's ``key``) is a column the preselection writes
    (``columns``): a misspelled name stops the workflow before any job, not when training (or a
    goodness-of-fit test) starts."""
    unknown = [name for name in features if name not in columns]
    if unknown:
        raise AnalysisError(
            f"config: key '{key}': '{unknown[0]}' is not a column of the skims; "
            f"use some of {', '.join(columns)}"
        )


def class_names(classes: list[Mapping[str, Any]]) -> list[str]:
    """Names of the classifier classes (``train.classes``), in the order of the network outputs."""
    return [entry["name"] for entry in classes]


def training_samples(
    samples: Mapping[str, Mapping[str, Any]], classes: list[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(sample, class) of every nominal simulated sample whose process feeds a training class."""
    class_of = {process: entry["name"] for entry in classes for process in entry["processes"]}
    return [
        (name, class_of[sample["process"]])
        for name, sample in samples.items()
        if has_shape_variations(sample) and sample.get("process") in class_of
    ]


def check_train_classes(
    samples: Mapping[str, Mapping[str, Any]], classes: list[Mapping[str, Any]]
) -> None:
    """Class names are unique, every class process is the process of a nominal simulated sample,
    and no process is in two classes."""
    processes = {s.get("process") for s in samples.values() if has_shape_variations(s)}
    seen: dict[str, str] = {}
    names = class_names(classes)
    for index, entry in enumerate(classes):
        if names.count(entry["name"]) > 1:
            raise AnalysisError(
                f"config: key 'train.classes.{index}': class name '{entry['name']}' is used "
                "twice; give every class its own name"
            )
        for process in entry["processes"]:
            if process not in processes:
                raise AnalysisError(
                    f"config: key 'train.classes.{index}' ({entry['name']}): process "
                    f"'{process}' is not the process of any nominal simulated sample "
                    f"(known: {sorted(processes)}); fix the name"
                )
            if process in seen:
                raise AnalysisError(
                    f"config: key 'train.classes.{index}' ({entry['name']}): process "
                    f"'{process}' is already in class '{seen[process]}'; a process feeds one "
                    "class only"
                )
            seen[process] = entry["name"]


def uncertainty_aware_inputs(
    training: list[tuple[str, str]],
    train: Mapping[str, Any],
    configs: Sequence[Mapping[str, Any]],
    skim: str,
    friend: str,
) -> list[dict[str, Any]]:
    """The event sets of the systematics in the uncertainty-aware loss, per training sample.

    A shape variation (``variations``) comes from the variation skims and their friends; a weight
    variation (``weights.variations``, ``tau_id``) from the nominal files with its weight column.
    A sample whose era does not have the systematic enters at its nominal (the systematic does
    not move that era's events), as in the histograms.

    Args:
        training: (sample, class) of every training sample.
        train: the ``train`` config section.
        configs: the validated config of each training sample (its era's, with several eras).
        skim, friend: path patterns of a skim and its friend tree, with ``{sample}`` and
            ``{variation}`` (the workflow's results layout).
    """
    if train["loss"] != "uncertainty_aware":
        return []
    names = [
        (shape_variations(c["variations"]), weight_variation_columns(c["weights"])) for c in configs
    ]
    entries = []
    for systematic in train["uncertainty_aware"]["systematics"]:
        known = any(
            v.name in shapes or f"weight_{v.name}" in columns
            for shapes, columns in names
            for v in both(systematic)
        )
        if not known:
            shapes = sorted({source for s, _ in names for source in sources(s)})
            raise AnalysisError(
                f"config: key 'train.uncertainty_aware.systematics': '{systematic}' is neither "
                f"a shape variation ({shapes}) nor a weight variation; use one of those names"
            )
        for variation in both(systematic):
            for index, ((sample, _), (shapes, columns)) in enumerate(
                zip(training, names, strict=True)
            ):
                file_variation, weight = NOMINAL, "weight"
                if variation.name in shapes:
                    file_variation = variation.name
                elif f"weight_{variation.name}" in columns:
                    weight = f"weight_{variation.name}"
                files = {"sample": sample, "variation": file_variation}
                entries.append(
                    {
                        "systematic": systematic,
                        "direction": variation.direction,
                        "sample": index,
                        "skim": skim.format(**files),
                        "friend": friend.format(**files),
                        "weight": weight,
                    }
                )
    return entries
