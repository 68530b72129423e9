"""Build the pyhf JSON workspace from the histograms (config ``workspace``).

One channel per histogram channel, one sample per process, and the modifiers:

- ``mu`` (or ``mu_<process>``) normfactors on the signal processes;
- ``lumi`` on every simulated process (pyhf's lumi modifier, Gaussian constraint); with several
  eras (config ``eras``) the luminosity is instead one variation per era, ``lumi_<era>``, in the
  histograms (pyhf allows one lumi parameter only);
- ``xsec_<process>`` normsys from ``workspace.normalization``;
- every shape, weight and alternative-sample variation ``<syst>_{up,down}`` as a histosys on the
  normalised shapes plus a normsys for its normalisation effect (same parameter), the standard
  split; one-sided variations are mirrored, asymmetric ones optionally symmetrised, optionally
  smoothed;
- the QCD estimate's ``qcd_norm`` normsys and ``qcd_shape`` histosys;
- ``staterror_<channel>`` (Barlow-Beeston lite) for bins above the relative-uncertainty threshold.

With one channel per era, ``xsec_<process>`` and ``qcd_norm`` are named ``<name>_<era>`` (the
channel's era) when they match ``eras.decorrelated``; the variations' names come decorrelated from
the histograms (:func:`analysis.stats.histograms.era_histograms`).

The observations are the data once the analysis is unblinded (config ``unblind``), and the
Asimov prediction until then (:mod:`analysis.stats.blinding`). Variations below the pruning
thresholds are dropped and listed with their size. The result is validated against the pyhf
schema and written with sorted keys, so equal inputs give equal bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyhf

from analysis.core.config import NOMINAL
from analysis.core.eras import PER_ERA, era_name, is_decorrelated, lumi_total
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import write_json
from analysis.core.variations import names, sources
from analysis.stats.channels import base_channel
from analysis.stats.histograms import DATA, read_histograms

log = logging.getLogger(__name__)

#: Smallest normsys factor written: pyhf interpolates normsys in log space.
MIN_NORM_FACTOR = 0.01


def templates_by_channel(histograms: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{channel: {process: {variation: (values, variances)}}} from ``{c}/{p}/{v}`` histograms."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for name, histogram in sorted(histograms.items()):
        channel, process, variation = name.split("/")
        values = np.asarray(histogram.values(), dtype=np.float64)
        variances = np.asarray(histogram.variances(), dtype=np.float64)
        result.setdefault(channel, {}).setdefault(process, {})[variation] = (values, variances)
    return result


def systematics_of(variations: Mapping[str, Any]) -> list[str]:
    """Names of the systematics among a process's variations (``<syst>_up`` / ``_down``)."""
    return sorted(sources(variations))


def symmetrized(
    nominal: np.ndarray, up: np.ndarray | None, down: np.ndarray | None, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Up and down templates: a missing side is mirrored (``nominal -/+ delta``); with
    ``mode == "all"`` both sides become ``nominal +- (up - down) / 2``."""
    if up is None and down is None:
        raise ValueError("a systematic needs at least one side")
    if down is None:
        down = 2 * nominal - up
    elif up is None:
        up = 2 * nominal - down
    elif mode == "all":
        half = (up - down) / 2
        up, down = nominal + half, nominal - half
    return up, down


def smoothed(nominal: np.ndarray, varied: np.ndarray) -> np.ndarray:
    """The variation with its relative deviation from nominal smoothed by a (1, 2, 1) kernel."""
    if len(nominal) < 3:
        return varied
    ratio = np.divide(varied, nominal, out=np.ones_like(varied), where=nominal != 0) - 1
    padded = np.r_[ratio[0], ratio, ratio[-1]]
    smooth = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    return nominal * (1 + smooth)


def split_norm_shape(
    nominal: np.ndarray, up: np.ndarray, down: np.ndarray
) -> tuple[tuple[float, float], tuple[np.ndarray, np.ndarray]]:
    """Normalisation factors (hi, lo) and shape-only templates scaled to the nominal yield."""
    total = nominal.sum()
    hi, lo = up.sum() / total, down.sum() / total
    shape_up = up / hi if hi > 0 else nominal.copy()
    shape_down = down / lo if lo > 0 else nominal.copy()
    return (float(hi), float(lo)), (shape_up, shape_down)


def build_workspace(
    histograms: Mapping[str, Any],
    settings: Mapping[str, Any],
    histogram_settings: Mapping[str, Any],
    *,
    unblind: bool,
    eras: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pyhf workspace and the list of pruned variations.

    Args:
        histograms: ``{channel}/{process}/{variation}`` histograms (see analysis.stats.histograms).
        settings: the ``workspace`` config section.
        histogram_settings: the ``histograms`` config section (signals, QCD settings).
        unblind: the config's ``unblind``: the observations are the data; while blinded they
            are the Asimov prediction (the sum of the nominal samples: signal strength 1, every
            nuisance at its nominal value) in every bin, so the workspace never holds data
            (any data histogram is ignored) and nothing exported from it does either.
        eras: with several eras, their settings (:func:`analysis.core.eras.era_settings`):
            no pyhf lumi modifier (the histograms carry ``lumi_<era>``), and per-era channels
            name their decorrelated normalisation uncertainties by era.

    Returns:
        (workspace specification, pruned variations with their size).
    """
    qcd = histogram_settings["qcd"]
    processes = _Processes(
        _pois(list(histogram_settings["signals"]), settings["poi"]),
        {qcd["process"]} if qcd["from_data"] else set(),
        qcd,
        eras,
    )
    channels, observations, pruned = [], [], []
    for channel, templates in templates_by_channel(histograms).items():
        if unblind and DATA not in templates:
            raise AnalysisError(f"channel '{channel}': no data histogram; add a data sample")
        samples = _samples(channel, templates, settings, processes, pruned)
        _add_staterror(channel, samples, settings["staterror_threshold"])
        channels.append({"name": channel, "samples": samples})
        if unblind:
            observed = templates[DATA][NOMINAL][0]
        else:
            observed = np.sum([sample["data"] for sample in samples], axis=0)
        observations.append({"name": channel, "data": observed.tolist()})
    spec = {
        "channels": channels,
        "observations": observations,
        "measurements": [_measurement(processes.pois, settings, lumi=eras is None)],
        "version": "1.0.0",
    }
    try:
        pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        raise AnalysisError(f"workspace: not a valid pyhf workspace ({err})") from None
    return spec, pruned


class _Processes(NamedTuple):
    """What sets a process's own modifiers apart: POIs of the signals, the data-driven QCD."""

    pois: dict[str, list[dict[str, Any]]]
    data_driven: set[str]
    qcd: Mapping[str, Any]
    #: the eras' settings, or None for one era
    eras: Mapping[str, Any] | None


def _samples(
    channel: str,
    templates: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    processes: _Processes,
    pruned: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The samples of one channel (with their nominal variances as ``_variances``, for the
    staterror), appending the variations they prune to ``pruned``."""
    samples = []
    for process, variations in templates.items():
        if process == DATA:
            continue
        nominal = variations[NOMINAL][0]
        if nominal.sum() <= 0:
            log.warning("channel %s: %s has no yield, left out", channel, process)
            continue
        modifiers = _process_modifiers(channel, process, settings, processes)
        for syst in systematics_of(variations):
            entries, size = _variation_modifiers(syst, nominal, variations, settings)
            modifiers += entries
            dropped = sorted({"normsys", "histosys"} - {entry["type"] for entry in entries})
            if dropped:
                pruned.append({"channel": channel, "process": process, "systematic": syst,
                               "dropped": dropped, **size})  # fmt: skip
        samples.append(
            {
                "name": process,
                "data": nominal.tolist(),
                "modifiers": modifiers,
                "_variances": variations[NOMINAL][1],
            }  # fmt: skip
        )
    return samples


def _process_modifiers(
    channel: str, process: str, settings: Mapping[str, Any], processes: _Processes
) -> list[dict[str, Any]]:
    """A process's POI, lumi and normalisation modifiers (before its variations')."""
    modifiers = list(processes.pois.get(process, []))
    data_driven = process in processes.data_driven
    if not data_driven and processes.eras is None:
        modifiers.append({"name": "lumi", "type": "lumi", "data": None})
    norm = (
        processes.qcd["norm_uncertainty"] if data_driven else settings["normalization"].get(process)
    )
    if norm:
        name = _era_parameter(
            "qcd_norm" if data_driven else f"xsec_{process}", channel, processes.eras
        )
        modifiers.append(
            {"name": name, "type": "normsys", "data": {"hi": 1 + norm, "lo": 1 - norm}}
        )
    return modifiers


def _pois(signals: Sequence[str], mode: str) -> dict[str, list[dict[str, Any]]]:
    """Normfactor modifiers per signal process: one shared ``mu`` or one ``mu_<process>`` each."""
    return {
        process: [
            {
                "name": "mu" if mode == "combined" else f"mu_{process}",
                "type": "normfactor",
                "data": None,
            }
        ]  # fmt: skip
        for process in signals
    }


def _variation_modifiers(
    syst: str,
    nominal: np.ndarray,
    variations: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """normsys and histosys of one systematic, each left out when its effect is below the
    pruning threshold, and the sizes of both effects."""
    up, down = (variations.get(name, (None,))[0] for name in names(syst))
    up, down = symmetrized(nominal, up, down, settings["symmetrize"])
    if settings["smoothing"]:
        up, down = smoothed(nominal, up), smoothed(nominal, down)
    up, down = np.clip(up, 0, None), np.clip(down, 0, None)
    (hi, lo), (shape_up, shape_down) = split_norm_shape(nominal, up, down)
    if min(hi, lo) < MIN_NORM_FACTOR:
        # pyhf's normsys interpolates in log space: a factor of 0 is undefined
        log.warning("%s: normalisation factor %.3g limited to %g", syst, min(hi, lo),
                    MIN_NORM_FACTOR)  # fmt: skip
        hi, lo = max(hi, MIN_NORM_FACTOR), max(lo, MIN_NORM_FACTOR)
    relative = np.divide(
        np.abs(np.r_[shape_up - nominal, shape_down - nominal]),
        np.r_[nominal, nominal],
        out=np.zeros(2 * len(nominal)),
        where=np.r_[nominal, nominal] > 0,
    )
    size = {"norm": float(max(abs(hi - 1), abs(lo - 1))), "shape": float(relative.max())}
    modifiers = []
    pruning = settings["pruning"]
    if size["norm"] >= pruning["norm"]:
        modifiers.append({"name": syst, "type": "normsys", "data": {"hi": hi, "lo": lo}})
    if size["shape"] >= pruning["shape"]:
        modifiers.append(
            {"name": syst, "type": "histosys",
             "data": {"hi_data": shape_up.tolist(), "lo_data": shape_down.tolist()}}
        )  # fmt: skip
    return modifiers, size


def _add_staterror(channel: str, samples: list[dict[str, Any]], threshold: float) -> None:
    """Barlow-Beeston-lite staterror from each sample's sum of squared weights (``_variances``,
    removed here); bins whose total relative MC uncertainty is below ``threshold`` get zero
    uncertainty, which pyhf treats as a fixed parameter."""
    variances = [np.maximum(sample.pop("_variances"), 0.0) for sample in samples]
    if not samples:
        return
    total = np.sum([sample["data"] for sample in samples], axis=0)
    relative = np.divide(
        np.sqrt(np.sum(variances, axis=0)), total, out=np.zeros_like(total), where=total > 0
    )
    below = relative < threshold
    for sample, variance in zip(samples, variances, strict=True):
        sigma = np.where(below, 0.0, np.sqrt(variance))
        sample["modifiers"].append(
            {"name": f"staterror_{channel}", "type": "staterror", "data": sigma.tolist()}
        )


def _era_parameter(name: str, channel: str, eras: Mapping[str, Any] | None) -> str:
    """``name``, or ``<name>_<era>`` of the channel's era for a decorrelated uncertainty in a
    per-era channel (merged channels keep one name: their eras share the normalisation)."""
    if eras is None or eras["channels"] != PER_ERA:
        return name
    era = base_channel(channel, eras["names"])[1]
    return era_name(name, era) if era and is_decorrelated(name, eras["decorrelated"]) else name


def _measurement(
    pois: Mapping[str, list[dict[str, Any]]], settings: Mapping[str, Any], *, lumi: bool = True
) -> dict:
    """The measurement: the POIs' bounds and, with ``lumi`` (one era), the lumi parameter (of
    the components' sum in quadrature, when the uncertainty is given by components)."""
    sigma = lumi_total(settings["lumi_uncertainty"])
    poi_names = sorted({modifier["name"] for mods in pois.values() for modifier in mods})
    lumi_parameter = {
        "name": "lumi",
        "auxdata": [1.0],
        "sigmas": [sigma],
        "bounds": [[1 - 5 * sigma, 1 + 5 * sigma]],
        "inits": [1.0],
    }
    poi_parameters = [
        {"name": name, "bounds": [list(settings["poi_bounds"])], "inits": [1.0]}
        for name in poi_names
    ]
    parameters = [lumi_parameter, *poi_parameters] if lumi else poi_parameters
    return {"name": "measurement", "config": {"poi": poi_names[0], "parameters": parameters}}


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the pyhf workspace from the histograms.")
    parser.add_argument("--histograms", required=True)
    parser.add_argument(
        "--unblind",
        action="store_true",
        help="observations: the data (else Asimov; config unblind)",
    )
    parser.add_argument(
        "--settings", required=True, help="workspace and histograms config (and eras)"
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--pruned", required=True, help="list of pruned variations (JSON)")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    spec, pruned = build_workspace(
        read_histograms(args.histograms),
        settings["workspace"],
        settings["histograms"],
        unblind=args.unblind,
        eras=settings.get("eras"),
    )
    for entry in pruned:
        log.info(
            "pruned %s of %s on %s in %s: norm %.2e, shape %.2e",
            "+".join(entry["dropped"]), entry["systematic"], entry["process"], entry["channel"],
            entry["norm"], entry["shape"],
        )  # fmt: skip
    model = pyhf.Workspace(spec).model()
    log.info(
        "workspace: %d channels, %d parameters, POI %s, observations: %s",
        len(spec["channels"]), len(model.config.par_order), model.config.poi_name,
        "data" if args.unblind else "Asimov (blinded)",
    )  # fmt: skip
    write_json(args.output, spec)
    write_json(args.pruned, pruned)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
