"""Several data-taking eras in one analysis (config ``eras``; see config/README.md).

An era is what ``--configfile config/eras/<era>.yaml`` makes of the whole analysis today: its
luminosity, selection, corrections and branch names. With ``eras.files`` set, every sample names
its ``era``, and the stages that read those settings (toy generation, preselection, friend
trees) receive the config with that era's files layered on top, exactly as Snakemake layers a
``--configfile``. The histograms either keep one channel per era (``<channel>_<era>``) or sum
the eras (``eras.channels``); a systematic matching ``eras.decorrelated`` gets one parameter per
era (``<name>_<era>``), every other keeps one name in every era (correlated). The luminosity
uncertainty of an era is its ``workspace.lumi_uncertainty``: a number is one parameter of that
era alone, ``lumi_<era>``; a mapping names its components, and a component named in several
eras is one parameter moving them together, each by its own size (CMS's luminosity uncertainties
are partly correlated between years).

With ``eras.files`` empty (the default, the toy) nothing here changes the analysis.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from analysis.core.config import load_yaml, validate
from analysis.core.errors import AnalysisError

#: Top-level config sections an era's files may set: what differs between data-taking eras.
ERA_SECTIONS = ("lumi", "toydata", "branches", "selection", "variations", "weights")
#: Keys of other sections an era's files may set (section -> keys).
ERA_KEYS = {"workspace": ("lumi_uncertainty",)}
#: Sections an era's files may set for their single-era use, which several eras ignore (the
#: figures' luminosity text belongs to the combined analysis, set in its own config).
IGNORED_SECTIONS = ("plots",)
#: How the eras enter the histograms: one channel per era, or summed in each channel.
PER_ERA, MERGED = "per_era", "merged"
#: The luminosity uncertainty's parameter, one per era: ``lumi_<era>``.
LUMI = "lumi"


def is_multi_era(config: Mapping[str, Any]) -> bool:
    """Whether the config defines eras (else it is one era: the whole config)."""
    return bool(config["eras"]["files"])


def layered(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base`` key by key, as Snakemake merges a
    ``--configfile``: mappings are merged, anything else (lists included) is replaced."""
    result = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = layered(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _check_overlay(era: str, path: str, overlay: Any) -> None:
    """An era file sets only what may differ between eras."""
    if not isinstance(overlay, Mapping):
        raise AnalysisError(f"era '{era}': {path} is not a mapping of config keys; fix the file")
    for key, value in overlay.items():
        if key in ERA_SECTIONS or key in IGNORED_SECTIONS:
            continue
        allowed = ERA_KEYS.get(key)
        extra = sorted(set(value) - set(allowed)) if allowed and isinstance(value, Mapping) else []
        if allowed is None or extra:
            name = f"{key}.{extra[0]}" if extra else key
            keys = [*ERA_SECTIONS, *(f"{s}.{k}" for s, ks in ERA_KEYS.items() for k in ks)]
            raise AnalysisError(
                f"era '{era}': {path} sets '{name}', which is the same for every era; set it "
                f"in the analysis config (an era's files set {', '.join(keys)})"
            )


def era_configs(
    config: Mapping[str, Any], schema: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Each era's config: the analysis config with the era's files layered on it in order.

    Every era's files must set ``lumi`` (the toy's default luminosity is no era's), set only the
    keys of :data:`ERA_SECTIONS` and :data:`ERA_KEYS` (and :data:`IGNORED_SECTIONS`), and the
    result must pass the config schema. ``{}`` for a single-era config.
    """
    configs = {}
    for era, files in config["eras"]["files"].items():
        if not isinstance(era, str):
            raise AnalysisError(
                f"config: key 'eras.files': era {era!r} is not a string; quote it (\"{era}\"), "
                "in the samples' `era` too"
            )
        paths = [files] if isinstance(files, str) else list(files)
        result = dict(config)
        sets_lumi = False
        for path in paths:
            overlay = load_yaml(path) or {}
            _check_overlay(era, path, overlay)
            sets_lumi = sets_lumi or "lumi" in overlay
            overlay = {k: v for k, v in overlay.items() if k not in IGNORED_SECTIONS}
            result = layered(result, overlay)
        if not sets_lumi:
            raise AnalysisError(
                f"era '{era}': none of its files ({', '.join(paths)}) sets `lumi`; give the "
                "era's integrated luminosity in pb^-1 in its era file"
            )
        validate(result, schema, f"era '{era}' ({', '.join(paths)})")
        configs[era] = result
    return configs


def check_sample_eras(
    samples: Mapping[str, Mapping[str, Any]], eras: Sequence[str], source: str
) -> None:
    """Every sample names a defined era when eras are defined, and none does otherwise; an
    alternative sample belongs to the era of the sample it varies."""
    for name, sample in samples.items():
        era = sample.get("era")
        if not eras and era is not None:
            raise AnalysisError(
                f"{source}: sample '{name}': era '{era}' but the config defines no eras; define "
                "it in eras.files or remove the sample's `era`"
            )
        if eras and era not in eras:
            what = f"era '{era}' is not defined" if era is not None else "no era"
            raise AnalysisError(
                f"{source}: sample '{name}': {what}; name one of the eras in eras.files "
                f"({', '.join(eras)})"
            )
        alternative = sample.get("alternative")
        if eras and alternative and samples.get(alternative["of"], {}).get("era") != era:
            raise AnalysisError(
                f"{source}: sample '{name}': era '{era}' differs from that of "
                f"'{alternative['of']}'; an alternative sample varies a sample of its own era"
            )


def sample_config(
    config: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    sample: Mapping[str, Any],
) -> Mapping[str, Any]:
    """The config a sample is processed with: its era's, or the analysis config itself."""
    era = sample.get("era")
    return configs[era] if era is not None else config


def era_name(name: str, era: str) -> str:
    """``<name>_<era>``: a channel of one era, or a decorrelated systematic's parameter."""
    return f"{name}_{era}"


def is_decorrelated(systematic: str, patterns: Sequence[str]) -> bool:
    """Whether a systematic has one parameter per era (it matches a glob of
    ``eras.decorrelated``); the luminosity always has."""
    return systematic == LUMI or any(fnmatch.fnmatchcase(systematic, p) for p in patterns)


def lumi_components(era: str, uncertainty: float | Mapping[str, float]) -> dict[str, float]:
    """An era's luminosity uncertainty as parameter name -> relative size: a number is the era's
    own parameter ``lumi_<era>``; a mapping (``{lumi_2018: 0.015, lumi_13TeV_correlated: 0.02}``)
    is its components, each a parameter of every era that names it."""
    if isinstance(uncertainty, Mapping):
        return {name: float(size) for name, size in uncertainty.items()}
    return {era_name(LUMI, era): float(uncertainty)}


def lumi_total(uncertainty: float | Mapping[str, float]) -> float:
    """One era's whole luminosity uncertainty: its components added in quadrature (in an analysis
    of one era they scale the same yields, so one parameter of this size is the same model)."""
    if isinstance(uncertainty, Mapping):
        return math.sqrt(sum(float(size) ** 2 for size in uncertainty.values()))
    return float(uncertainty)


def era_settings(
    config: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """What the histograms and workspace steps need of the eras, as JSON-ready settings: their
    ``names``, ``channels``, ``decorrelated`` and each era's ``lumi_uncertainty`` as parameter
    name -> size (:func:`lumi_components`); ``None`` for one era."""
    if not configs:
        return None
    return {
        "names": list(configs),
        "channels": config["eras"]["channels"],
        "decorrelated": list(config["eras"]["decorrelated"]),
        "lumi_uncertainty": {
            era: lumi_components(era, era_config["workspace"]["lumi_uncertainty"])
            for era, era_config in configs.items()
        },
    }


def check_decorrelated(config: Mapping[str, Any]) -> None:
    """Merged channels hold one QCD estimate (from the eras' summed same-sign data) and one
    normalisation per process: their uncertainties cannot be split by era."""
    eras = config["eras"]
    if not eras["files"] or eras["channels"] != MERGED:
        return
    processes = config["workspace"]["normalization"] or {}
    shared = ["qcd_norm", "qcd_shape", *(f"xsec_{process}" for process in processes)]
    for pattern in eras["decorrelated"]:
        for name in shared:
            if fnmatch.fnmatchcase(name, pattern):
                raise AnalysisError(
                    f"config: key 'eras.decorrelated': '{pattern}' matches {name}, which merged "
                    "channels cannot split by era; set eras.channels: per_era or leave it out"
                )
