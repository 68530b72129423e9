"""Histograms of the fitted observables, per channel x process x variation (config ``histograms``).

Three steps, each a workflow rule:

1. :func:`~analysis.stats.binning.derive_binning` - bin edges per channel from the nominal
   simulation (written to ``binning.json``), so that every variation of every sample shares them;
2. :func:`fill_sample` - one sample's histograms, all its variations in one pass over its columns
   (weight variations re-use the same bin indices with other weights);
3. :func:`merge` - sums samples per process, estimates QCD multijet from same-sign data, finds
   the sensitive bins to blind, and writes one ROOT file named ``{channel}/{process}/{variation}``
   (TH1D with sum of squared weights) plus yields tables. While the analysis is blinded (config
   ``unblind: false``, see :mod:`analysis.stats.blinding`) the file holds no data histograms.

The channels and their selections are in :mod:`analysis.stats.channels`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import hist
import numpy as np
import uproot

from analysis.core.config import NOMINAL, is_simulation, weight_variation_columns
from analysis.core.eras import MERGED, PER_ERA, era_name, is_decorrelated
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path, read_json, read_with_friends, write_json
from analysis.core.tables import latex_row, markdown_section, tex, value_error, write_text
from analysis.core.variations import Variation, names
from analysis.stats.binning import derive_binning
from analysis.stats.channels import (
    SAME_SIGN,
    Channel,
    base_channel,
    channels,
    era_channels,
    passes,
    same_sign,
    selection_columns,
)

log = logging.getLogger(__name__)

#: Process name of the observed data.
DATA = "data"

# --- filling ----------------------------------------------------------------------------------


def _new_hist(edges: Sequence[float], observable: str) -> hist.Hist:
    return hist.Hist(hist.axis.Variable(edges, name=observable), storage=hist.storage.Weight())


def fill_columns(
    columns: Mapping[str, np.ndarray],
    chans: Sequence[Channel],
    edges: Mapping[str, Sequence[float]],
    weight_columns: Mapping[str, str],
) -> dict[tuple[str, str], hist.Hist]:
    """Histograms of each channel for each (variation name -> weight column), one pass.

    Returns:
        {(channel, variation): histogram}.
    """
    result = {}
    for channel in chans:
        mask = passes(columns, channel)
        values = columns[channel.observable][mask]
        for variation, column in weight_columns.items():
            histogram = _new_hist(edges[channel.name.removeprefix(SAME_SIGN)], channel.observable)
            histogram.fill(values, weight=columns[column][mask])
            result[(channel.name, variation)] = histogram
    return result


def sample_weight_variations(sample: Mapping[str, Any], weights: Mapping[str, Any]) -> dict:
    """Variation name -> friend column of the weight variations a sample's nominal tree carries."""
    if not is_simulation(sample) or "alternative" in sample:
        return {}
    return {column.removeprefix("weight_"): column for column in weight_variation_columns(weights)}


def fill_sample(
    sample: Mapping[str, Any],
    files: Mapping[str, tuple[str, str, str]],
    settings: Mapping[str, Any],
    classes: Sequence[str],
    edges: Mapping[str, Sequence[float]],
    weights: Mapping[str, Any],
) -> dict[str, hist.Hist]:
    """All histograms of one sample, named ``{channel}/{process}/{variation}``.

    Args:
        sample: the sample's entry in the samples file.
        files: variation -> (skim, weight friend, score friend).
        settings: the ``histograms`` config section.
        classes: the classifier classes.
        edges: bin edges per channel (from :func:`derive_binning`).
        weights: the ``weights`` config section (names the weight variations).
    """
    chans = channels(settings, classes)
    process = sample.get("process", DATA) if is_simulation(sample) else DATA
    alternative = sample.get("alternative")
    result: dict[str, hist.Hist] = {}
    for variation, (skim, friend, scores) in files.items():
        weight_variations = {NOMINAL: "weight"}
        if variation == NOMINAL:
            weight_variations.update(sample_weight_variations(sample, weights))
        needed = [*selection_columns(chans), *weight_variations.values()]
        columns = read_with_friends(skim, [friend, scores], sorted(set(needed)))
        _check_weights(columns, weight_variations.values(), skim)
        regions = [*chans, *[same_sign(c) for c in chans]] if variation == NOMINAL else chans
        filled = fill_columns(columns, regions, edges, weight_variations)
        result.update(named_histograms(filled, process, variation, alternative))
    return result


def named_histograms(
    filled: Mapping[tuple[str, str], hist.Hist],
    process: str,
    variation: str,
    alternative: Mapping[str, Any] | None,
) -> dict[str, hist.Hist]:
    """One variation's filled histograms (by channel and weight variation) named
    ``{channel}/{process}/{label}``: the nominal events' weight variations by their own names, a
    shifted sample by its variation, an alternative sample as the up side of its systematic; the
    same-sign regions nominal only (they feed the QCD estimate)."""
    named = {}
    for (channel, name), histogram in filled.items():
        if channel.startswith(SAME_SIGN) and name != NOMINAL:
            continue
        label = name if variation == NOMINAL else variation
        if alternative:
            label = Variation(alternative["systematic"], "up").name
        named[f"{channel}/{process}/{label}"] = histogram
    return named


def _check_weights(columns: Mapping[str, np.ndarray], names, source: str) -> None:
    for name in names:
        bad = ~np.isfinite(columns[name])
        if bad.any():
            raise AnalysisError(
                f"{source}: {int(bad.sum())} events with a non-finite '{name}'; "
                "rerun the friends stage and check the weight inputs"
            )


# --- merging, QCD, blinding -------------------------------------------------------------------


def write_histograms(path: str | os.PathLike[str], histograms: Mapping[str, hist.Hist]) -> None:
    """Write histograms as TH1D (with sumw2) under their names, atomically, in sorted order."""
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as output:
            for name in sorted(histograms):
                output[name] = histograms[name]


def read_histograms(path: str | os.PathLike[str]) -> dict[str, hist.Hist]:
    """All histograms of a file written by :func:`write_histograms`, by name."""
    try:
        source = uproot.open(path)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found; run the histograms stage") from None
    return {
        name.split(";")[0]: source[name].to_hist()
        for name, classname in source.classnames(recursive=True).items()
        if classname.startswith("TH1")
    }


def qcd_from_same_sign(
    histograms: Mapping[str, hist.Hist],
    chans: Sequence[Channel],
    settings: Mapping[str, Any],
) -> dict[str, hist.Hist]:
    """QCD in each channel: (same-sign data - same-sign simulation) x OS/SS transfer factor.

    Negative bins are set to zero with a warning. Also returns the shape variations
    ``{channel}/QCD/qcd_shape_{up,down}``: a linear tilt across the bins of relative size
    ``qcd.shape_tilt`` at the edges.
    """
    qcd = settings["qcd"]
    result = {}
    for channel in chans:
        prefix = f"{SAME_SIGN}{channel.name}/"
        data = histograms.get(f"{prefix}{DATA}/{NOMINAL}")
        if data is None:
            raise AnalysisError(
                f"channel '{channel.name}': no same-sign data histogram for the QCD estimate; "
                "add a data sample or set histograms.qcd.from_data: false"
            )
        values = data.values().copy()
        variances = data.variances().copy()
        for name, histogram in histograms.items():
            if name.startswith(prefix) and name.endswith(f"/{NOMINAL}") and f"/{DATA}/" not in name:
                values -= histogram.values()
                variances += histogram.variances()
        factor = qcd["os_ss_factor"]
        values, variances = values * factor, variances * factor**2
        negative = values < 0
        if negative.any():
            log.warning(
                "channel %s: QCD estimate negative in bins %s, set to 0",
                channel.name, np.flatnonzero(negative).tolist(),
            )  # fmt: skip
            values[negative] = 0.0
        tilt = np.linspace(-1.0, 1.0, len(values)) * qcd["shape_tilt"]
        up, down = names("qcd_shape")
        for variation, scale in ((NOMINAL, 1.0), (up, 1 + tilt), (down, 1 - tilt)):
            histogram = data.copy()
            histogram.view().value = values * scale
            histogram.view().variance = variances * scale**2
            result[f"{channel.name}/{qcd['process']}/{variation}"] = histogram
    return result


def blinded_bins(
    histograms: Mapping[str, hist.Hist], channel: str, signals: Sequence[str], threshold: float
) -> np.ndarray:
    """Bins of a channel whose nominal signal-to-background ratio exceeds ``threshold``."""
    signal = background = 0.0
    for name, histogram in histograms.items():
        parts = name.split("/")
        if parts[0] != channel or parts[2] != NOMINAL or parts[1] == DATA:
            continue
        if parts[1] in signals:
            signal = signal + histogram.values()
        else:
            background = background + histogram.values()
    return blinding_mask(signal, background, threshold)


def blinding_mask(signal: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """Bins whose expected signal-to-background ratio exceeds ``threshold``; a bin with signal
    and no background counts as infinitely sensitive, an empty bin as not sensitive."""
    signal = np.asarray(signal, dtype=float)
    background = np.asarray(background, dtype=float)
    ratio = np.divide(
        signal, background, out=np.where(signal > 0, np.inf, 0.0), where=background > 0
    )
    return np.asarray(ratio > threshold)


class Merged(NamedTuple):
    """What the merge step writes: the histograms, the blinded bins, the visible data yields."""

    #: ``{channel}/{process}/{variation}``; no data while blinded (never numbers that look like
    #: data in bins nobody may see)
    histograms: dict[str, hist.Hist]
    #: blinded bins per channel (all False when unblinded)
    blinded: dict[str, list[bool]]
    #: per channel, the data yield in its unblinded bins (channels without data left out)
    data_yields: dict[str, float]


def _summed(
    sample_histograms: Sequence[Mapping[str, hist.Hist]], qcd: Mapping[str, Any]
) -> dict[str, hist.Hist]:
    """The histograms summed by name, without the simulated process QCD replaces."""
    summed: dict[str, hist.Hist] = {}
    for histograms in sample_histograms:
        for name, histogram in histograms.items():
            if qcd["from_data"] and name.split("/")[1] == qcd["process"]:
                continue  # replaced by the estimate from same-sign data
            summed[name] = summed[name] + histogram if name in summed else histogram.copy()
    return summed


def era_histograms(
    histograms: Mapping[str, hist.Hist], era: str, eras: Mapping[str, Any]
) -> dict[str, hist.Hist]:
    """One sample's histograms as they enter an analysis of several eras.

    A decorrelated systematic's variations (``eras.decorrelated``) are renamed
    ``<syst>_<era>_{up,down}``; simulated processes get the era's luminosity variations, one
    pair per component (``lumi_<era>_{up,down}`` for a number: the nominal scaled by 1 +- the
    size); per era, the channels (same-sign copies included) are renamed ``<channel>_<era>``.
    """
    patterns = eras["decorrelated"]
    lumi = eras["lumi_uncertainty"][era]
    result: dict[str, hist.Hist] = {}
    for name, histogram in histograms.items():
        channel, process, variation = name.split("/")
        if eras["channels"] == PER_ERA:
            channel = era_name(channel, era)
        parsed = Variation.parse(variation)
        if not parsed.is_nominal and is_decorrelated(parsed.source, patterns):
            variation = Variation(era_name(parsed.source, era), parsed.direction).name
        result[f"{channel}/{process}/{variation}"] = histogram
        if parsed.is_nominal and process != DATA and not channel.startswith(SAME_SIGN):
            for component, sigma in lumi.items():
                for side, scale in zip(names(component), (1 + sigma, 1 - sigma), strict=True):
                    result[f"{channel}/{process}/{side}"] = histogram * scale
    return result


def _summed_eras(
    sample_histograms: Sequence[Mapping[str, hist.Hist]],
    sample_eras: Sequence[str],
    eras: Mapping[str, Any],
    qcd: Mapping[str, Any],
) -> dict[str, hist.Hist]:
    """The samples of several eras summed by name (:func:`era_histograms`).

    Merged, a variation that an era does not have for a process (a decorrelated parameter of
    another era, a systematic only some eras' config names, such as their JES sources, or an
    alternative sample of another era) takes that era's samples of the process at their
    nominal: the parameter moves the share of the eras that have it, the others stay put. Per
    era, each channel holds its era's variations alone.
    """
    by_era: dict[str, list[Mapping[str, hist.Hist]]] = {}
    for histograms, era in zip(sample_histograms, sample_eras, strict=True):
        by_era.setdefault(era, []).append(era_histograms(histograms, era, eras))
    summed = _summed([h for samples in by_era.values() for h in samples], qcd)
    if eras["channels"] != MERGED:
        return summed
    summed_by_era = {era: _summed(samples, qcd) for era, samples in by_era.items()}
    for name in list(summed):
        channel, process, label = name.split("/")
        if label == NOMINAL:
            continue
        for histograms in summed_by_era.values():
            nominal = histograms.get(f"{channel}/{process}/{NOMINAL}")
            if name not in histograms and nominal is not None:
                summed[name] = summed[name] + nominal
    return summed


def _qcd_per_era(estimate: Mapping[str, hist.Hist], eras: Mapping[str, Any]) -> dict:
    """The QCD estimate of per-era channels, its shape variation renamed ``qcd_shape_<era>``
    when decorrelated (the channel's era)."""
    if not is_decorrelated("qcd_shape", eras["decorrelated"]):
        return dict(estimate)
    result = {}
    for name, histogram in estimate.items():
        channel, process, label = name.split("/")
        parsed = Variation.parse(label)
        if not parsed.is_nominal:
            era = base_channel(channel, eras["names"])[1]
            label = Variation(era_name(parsed.source, era), parsed.direction).name
        result[f"{channel}/{process}/{label}"] = histogram
    return result


def merge(
    sample_histograms: Sequence[Mapping[str, hist.Hist]],
    settings: Mapping[str, Any],
    classes: Sequence[str],
    blind: bool,
    sample_eras: Sequence[str] | None = None,
) -> Merged:
    """Sum the samples per process, add QCD from data, blind; drop same-sign histograms.

    With several eras (``settings["eras"]``, see :func:`era_histograms`), ``sample_eras`` gives
    the era of each entry of ``sample_histograms``: per era, the eras' channels stay apart
    (``<channel>_<era>``); merged, each channel sums the eras.

    While ``blind``, the bins whose nominal signal-to-background ratio exceeds
    ``blind_threshold`` are blinded and the data histograms are left out of the result: only
    their yield in the unblinded bins is kept, for the yields tables.
    """
    qcd = settings["qcd"]
    eras = settings.get("eras")
    if eras is None:
        summed = _summed(sample_histograms, qcd)
        chans = channels(settings, classes)
    else:
        if sample_eras is None or len(sample_eras) != len(sample_histograms):
            raise ValueError("several eras: give the era of every sample's histograms")
        summed = _summed_eras(sample_histograms, sample_eras, eras, qcd)
        chans = channels(settings, classes)
        if eras["channels"] == PER_ERA:
            chans = era_channels(chans, eras["names"])
    if qcd["from_data"]:
        estimate = qcd_from_same_sign(summed, chans, settings)
        if eras is not None and eras["channels"] == PER_ERA:
            estimate = _qcd_per_era(estimate, eras)
        summed.update(estimate)
    final = {name: h for name, h in summed.items() if not name.startswith(SAME_SIGN)}
    blinded, data_yields = {}, {}
    for channel in chans:
        nbins = len(next(h for n, h in final.items() if n.startswith(f"{channel.name}/")).values())
        mask = np.zeros(nbins, dtype=bool)
        if blind:
            threshold = settings["blind_threshold"]
            mask = blinded_bins(final, channel.name, settings["signals"], threshold)
        blinded[channel.name] = mask.tolist()
        data = final.get(f"{channel.name}/{DATA}/{NOMINAL}")
        if data is not None:
            data_yields[channel.name] = float(data.values()[~mask].sum())
    if blind:
        final = {name: h for name, h in final.items() if name.split("/")[1] != DATA}
    return Merged(final, blinded, data_yields)


def check_processes(histograms: Mapping[str, hist.Hist]) -> None:
    """A process with zero nominal yield in every channel cannot enter a fit: say which."""
    totals: dict[str, float] = {}
    for name, histogram in histograms.items():
        channel, process, variation = name.split("/")
        if variation == NOMINAL and process != DATA:
            totals[process] = totals.get(process, 0.0) + float(histogram.values().sum())
    for process, total in sorted(totals.items()):
        if total <= 0:
            raise AnalysisError(
                f"process '{process}': zero yield in every channel; remove its samples or "
                "loosen the selection"
            )


def yields_tables(merged: Merged) -> tuple[str, str]:
    """Nominal yields +- MC statistical uncertainty per channel, and the data yield of its
    unblinded bins, as markdown and LaTeX."""
    markdown, latex = [], []
    histograms = merged.histograms
    for channel in sorted({name.split("/")[0] for name in histograms}):
        simulated = []
        for name in sorted(histograms):
            chan, process, variation = name.split("/")
            if chan == channel and variation == NOMINAL and process != DATA:
                h = histograms[name]
                simulated.append((process, h.values().sum(), np.sqrt(h.variances().sum())))
        total = (sum(r[1] for r in simulated), np.sqrt(sum(r[2] ** 2 for r in simulated)))
        data_text = "-"
        if channel in merged.data_yields:
            data_text = f"{merged.data_yields[channel]:.0f}"
            mask = merged.blinded.get(channel, [])
            if any(mask):
                data_text += f" ({sum(mask)} of {len(mask)} bins blinded)"
        cells = [[p, value_error(v, e)] for p, v, e in simulated]
        cells += [["total", value_error(*total)], ["data", data_text]]
        markdown += markdown_section(channel, ["process", "yield"], cells)
        latex += [
            f"% channel {channel}",
            r"\begin{tabular}{lr}",
            r"\hline",
            r"Process & Yield \\",
            r"\hline",
            *[latex_row([tex(p), value_error(v, e, latex=True)]) for p, v, e in simulated],
            r"\hline",
            latex_row(["Total", value_error(*total, latex=True)]),
            latex_row(["Data", data_text]),
            r"\hline",
            r"\end{tabular}",
            "",
        ]
    return "\n".join(markdown), "\n".join(latex)


def era_binning(
    edges: Mapping[str, Sequence[float]], eras: Mapping[str, Any] | None
) -> dict[str, Sequence[float]]:
    """The bin edges per channel, with each per-era channel's (``<channel>_<era>``: the edges of
    its channel, derived from every era's simulation) for the readers of ``binning.json``."""
    result = dict(edges)
    if eras is not None and eras["channels"] == PER_ERA:
        for era in eras["names"]:
            result.update({era_name(channel, era): value for channel, value in edges.items()})
    return result


# --- command line -----------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Histograms per channel x process x variation.")
    parser.add_argument("step", choices=["binning", "fill", "merge"])
    parser.add_argument("--settings", required=True, help="histograms, train classes, weights")
    parser.add_argument("--processes", help="binning: process of each input, as JSON list")
    parser.add_argument("--sample-spec", help="fill: the sample's entry, as JSON")
    parser.add_argument("--variations", nargs="*", default=[], help="fill: variation per input")
    parser.add_argument("--skims", nargs="*", default=[])
    parser.add_argument("--friends", nargs="*", default=[])
    parser.add_argument("--scores", nargs="*", default=[])
    parser.add_argument("--binning", help="fill: binning.json")
    parser.add_argument("--inputs", nargs="*", default=[], help="merge: per-sample files")
    parser.add_argument("--eras", nargs="*", help="merge: the era of each input (several eras)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--blinding", help="merge: blinded bins (JSON)")
    parser.add_argument("--yields", nargs=2, help="merge: markdown and LaTeX yields tables")
    parser.add_argument(
        "--unblind", action="store_true", help="merge: keep the data (config unblind)"
    )
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    histograms_settings, classes = settings["histograms"], settings["classes"]
    if args.step == "binning":
        inputs = list(zip(json.loads(args.processes), args.skims, args.friends, args.scores,
                          strict=True))  # fmt: skip
        edges = era_binning(derive_binning(inputs, histograms_settings, classes),
                            histograms_settings.get("eras"))  # fmt: skip
        for channel, channel_edges in edges.items():
            log.info("%s: %d bins %s", channel, len(channel_edges) - 1, channel_edges)
        write_json(args.output, edges)
    elif args.step == "fill":
        files = dict(zip(args.variations, zip(args.skims, args.friends, args.scores, strict=True),
                         strict=True))  # fmt: skip
        histograms = fill_sample(
            json.loads(args.sample_spec), files, histograms_settings, classes,
            read_json(args.binning), settings["weights"],
        )  # fmt: skip
        write_histograms(args.output, histograms)
    else:
        merged = merge([read_histograms(p) for p in args.inputs], histograms_settings, classes,
                       blind=not args.unblind, sample_eras=args.eras)  # fmt: skip
        check_processes(merged.histograms)
        write_histograms(args.output, merged.histograms)
        write_json(args.blinding, merged.blinded)
        markdown, latex = yields_tables(merged)
        for path, text in zip(args.yields, (markdown, latex), strict=True):
            write_text(path, text)
        log.info("%d histograms, blinded bins: %s%s", len(merged.histograms),
                 {c: int(sum(m)) for c, m in merged.blinded.items()},
                 "" if args.unblind else " (blinded: data left out)")  # fmt: skip


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
