"""Cutflow (figure and tables) and input-feature distributions (data vs stacked prediction).

Reads the preselection's ``*.cutflow.json`` files and the nominal skims with their friend trees
(event weight ``weight``). Feature figures are made per region (``plots.regions``), with a
data/prediction ratio panel and the prediction's uncertainty as a band. QCD multijet is estimated
as in the fit: with ``histograms.qcd.from_data``, from same-sign data by
:func:`analysis.stats.histograms.qcd_from_same_sign` (its simulation is not drawn), with the
estimate's statistical, normalisation and shape uncertainties in the band. While the analysis is
blinded, data are hidden in every bin whose expected signal-to-background ratio exceeds the
histograms' threshold, as in the fitted histograms.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_with_friends
from analysis.core.tables import latex_row, markdown_table, tex, write_text
from analysis.core.variations import NOMINAL, names
from analysis.plots.cli import REQUIRED, REQUIRED_LIST, WORKERS, Subcommand, command_line
from analysis.plots.stackplot import DATA, plot_stack
from analysis.plots.style import (
    PlotStyle,
    add_label,
    draw_figures,
    new_figure,
    process_colors,
    safe_name,
    save_figure,
)
from analysis.stats.channels import Channel, same_sign, selection_mask
from analysis.stats.histograms import blinding_mask, qcd_from_same_sign


def read_cutflows(paths: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Cuts of every sample's cutflow file, keyed by sample, checked to share the same cuts."""
    cutflows: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        content = read_json(path)
        if "sample" not in content or "cuts" not in content:
            raise AnalysisError(f"{path}: not a cutflow (no 'sample'/'cuts'); rerun preselect")
        cutflows[content["sample"]] = content["cuts"]
    names = {tuple(cut["name"] for cut in cuts) for cuts in cutflows.values()}
    if len(names) > 1:
        raise AnalysisError(
            f"cutflows list different cuts ({sorted(names)}); rerun preselect for all samples"
        )
    return cutflows


def cutflow_tables(cutflows: Mapping[str, list[dict[str, Any]]]) -> tuple[str, str]:
    """Markdown and LaTeX tables: cuts as rows, samples as columns, events passing and the
    cumulative efficiency (weighted, in percent) of each cut.

    Returns:
        ``(markdown, latex)`` table texts.
    """
    samples = list(cutflows)
    cuts = [cut["name"] for cut in next(iter(cutflows.values()))]
    rows = []
    for index, cut in enumerate(cuts):
        cells = []
        for sample in samples:
            entry, first = cutflows[sample][index], cutflows[sample][0]
            efficiency = 100.0 * entry["weighted"] / first["weighted"] if first["weighted"] else 0
            cells.append((f"{entry['events']:.0f}", f"{efficiency:.2f}"))
        rows.append((cut, cells))
    markdown = markdown_table(
        ["cut", *samples],
        [[cut, *(f"{n} ({eff}%)" for n, eff in cells)] for cut, cells in rows],
    )
    latex = [
        r"\begin{tabular}{l" + "r" * len(samples) + "}",
        r"\hline",
        latex_row(["Cut", *map(tex, samples)]),
        r"\hline",
        *[latex_row([tex(cut), *(f"{n} ({eff}\\%)" for n, eff in cells)]) for cut, cells in rows],
        r"\hline",
        r"\end{tabular}",
    ]
    return "\n".join(markdown) + "\n", "\n".join(latex) + "\n"


def plot_cutflow(
    cutflows: Mapping[str, list[dict[str, Any]]], prefix: str, style: PlotStyle
) -> list[Path]:
    """Cumulative weighted efficiency of every cut, one line per sample, on a log scale."""
    fig, ax = new_figure(style, figsize=(11, 8))
    colors = process_colors(list(cutflows), style)
    cuts = [cut["name"] for cut in next(iter(cutflows.values()))]
    for sample, entries in cutflows.items():
        first = entries[0]["weighted"] or 1.0
        efficiency = np.asarray([entry["weighted"] for entry in entries]) / first
        line = {"color": "black", "marker": "o"} if sample == DATA else {"color": colors[sample]}
        ax.plot(np.arange(len(cuts)), efficiency, label=style.labels.process(sample), **line)
    ax.set_yscale("log")
    # upright names: slanted ones overlap their neighbours' boxes once names are long
    ax.set_xticks(np.arange(len(cuts)), cuts, rotation=90)
    ax.minorticks_off()
    ax.set_ylabel("Cumulative efficiency")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the lines
    add_label(ax, style, data=DATA in cutflows, lumi=False)
    return save_figure(fig, prefix, style)


def load_events(
    skims: Sequence[str],
    friends: Sequence[str],
    processes: Sequence[str],
    columns: Sequence[str],
) -> dict[str, dict[str, np.ndarray]]:
    """Columns and event weight of every process, concatenated over its samples.

    Args:
        skims: nominal skims, one per sample.
        friends: the friend tree of each skim (provides ``weight``).
        processes: the process of each sample (``data`` for collision data).
        columns: skim columns to read (features and region selection columns).
    """
    if not len(skims) == len(friends) == len(processes):
        raise AnalysisError("--skims, --friends and --processes need one entry per sample")
    events: dict[str, list[dict[str, np.ndarray]]] = {}
    for skim, friend, process in zip(skims, friends, processes, strict=True):
        events.setdefault(process, []).append(
            read_with_friends(skim, [friend], [*columns, "weight"])
        )
    return {
        process: {
            name: np.concatenate([part[name] for part in parts]) for name in [*columns, "weight"]
        }
        for process, parts in events.items()
    }


def feature_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges for a feature: unit bins for integer-valued ones, else ``bins`` equal bins
    between the 0.5% and 99.5% quantiles (tails go to the outer bins)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    if np.all(values == np.round(values)) and values.max() - values.min() <= 3 * bins:
        return np.arange(values.min() - 0.5, values.max() + 1.5)
    low, high = np.quantile(values, [0.005, 0.995])
    if high <= low:
        low, high = low - 0.5, low + 0.5
    return np.linspace(low, high, bins + 1)


def _fill(values: np.ndarray, weights: np.ndarray, edges: np.ndarray):
    """Weighted counts and sum of squared weights, with under- and overflow in the outer bins."""
    clipped = np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf))
    counts, _ = np.histogram(clipped, edges, weights=weights)
    sumw2, _ = np.histogram(clipped, edges, weights=weights**2)
    return counts, sumw2


def _weights(process: str, columns: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Event weights of the selected events: ``weight`` for simulation, one for data."""
    return np.ones(int(mask.sum())) if process == DATA else columns["weight"][mask]


def _region_histograms(
    events: Mapping[str, Mapping[str, np.ndarray]],
    selection: Mapping[str, Any],
    feature: str,
    edges: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """process -> (counts, sum of squared weights) of ``feature`` of the events in a selection."""
    result = {}
    for process, columns in events.items():
        mask = selection_mask(columns, selection)
        result[process] = _fill(columns[feature][mask], _weights(process, columns, mask), edges)
    return result


def transfer_factor(region: str, selection: Mapping[str, Any], qcd: Mapping[str, Any]) -> float:
    """Factor from same-sign QCD to QCD in a region: ``qcd.os_ss_factor`` in an opposite-sign
    region, 1 in a same-sign one, both summed in a region of either sign."""
    sign = selection.get("is_os")
    if sign is None:
        return 1.0 + float(qcd["os_ss_factor"])
    if isinstance(sign, (int, float)) and sign in (0, 1):
        return float(qcd["os_ss_factor"]) if sign == 1 else 1.0
    raise AnalysisError(
        f"plots.regions.{region}: is_os must be 0, 1 or absent for the QCD estimate from "
        "same-sign data (histograms.qcd.from_data)"
    )


def qcd_estimate(
    events: Mapping[str, Mapping[str, np.ndarray]],
    region: str,
    selection: Mapping[str, Any],
    feature: str,
    edges: np.ndarray,
    qcd: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """QCD in a region as the fit has it: same-sign data minus same-sign simulation times the
    transfer factor (:func:`analysis.stats.histograms.qcd_from_same_sign`).

    Args:
        events: columns of data and of the simulation other than QCD, by process.
        region: the region's name; selection: its cuts.
        feature: the histogrammed column; edges: its bin edges.
        qcd: the ``histograms.qcd`` section.

    Returns:
        The estimate per bin and its squared uncertainty: the statistical one of the estimate,
        the normalisation (``qcd.norm_uncertainty``) and the larger shift of the shape
        variations ``qcd_shape_{up,down}``, added in quadrature.
    """
    channel = Channel(region, selection, feature)
    inputs = _region_histograms(events, same_sign(channel).selection, feature, edges)
    histograms = {}
    for process, (counts, sumw2) in inputs.items():
        histogram = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
        histogram.view().value, histogram.view().variance = counts, sumw2
        histograms[f"{same_sign(channel).name}/{process}/{NOMINAL}"] = histogram
    settings = {"qcd": {**qcd, "os_ss_factor": transfer_factor(region, selection, qcd)}}
    estimate = qcd_from_same_sign(histograms, [channel], settings)
    prefix = f"{region}/{qcd['process']}"
    nominal = estimate[f"{prefix}/{NOMINAL}"]
    values = nominal.values()
    shape = np.max(
        [np.abs(estimate[f"{prefix}/{name}"].values() - values) for name in names("qcd_shape")],
        axis=0,
    )
    variance = nominal.variances() + (float(qcd["norm_uncertainty"]) * values) ** 2 + shape**2
    return values, variance


def plot_features(
    events: Mapping[str, Mapping[str, np.ndarray]],
    features: Sequence[str],
    regions: Mapping[str, Mapping[str, Any]],
    bins: int,
    output_dir: str | Path,
    style: PlotStyle,
    blinding: Mapping[str, Any] | None = None,
    qcd: Mapping[str, Any] | None = None,
    workers: int = 1,
) -> list[Path]:
    """One stacked figure per region and feature, ``{region}_{feature}`` in ``output_dir``,
    drawn by ``workers`` processes (see :func:`~analysis.plots.style.draw_figures`).

    Binning is chosen from the simulation in each region, so data never shapes its own binning.
    With ``blinding`` (``signals``: signal processes, ``threshold``: the S/B above which a bin is
    blinded), data are hidden where the prediction has S/B above the threshold. With ``qcd``
    (the ``histograms.qcd`` section) and ``from_data``, QCD is estimated from same-sign data
    (:func:`qcd_estimate`) instead of taken from its simulation.
    """
    from_data = bool(qcd and qcd["from_data"])
    drop = {DATA, qcd["process"]} if from_data else {DATA}
    simulation = [process for process in events if process not in drop]
    if not simulation:
        raise AnalysisError("no simulated sample among the inputs; check the samples file")
    figures = []
    for region, selection in regions.items():
        missing = [name for name in selection if name not in events[simulation[0]]]
        if missing:
            raise AnalysisError(
                f"plots.regions.{region}: column {missing[0]!r} is not in the skims"
            )
        shown = {p: columns for p, columns in events.items() if p in simulation or p == DATA}
        for feature in features:
            pooled = np.concatenate(
                [events[p][feature][selection_mask(events[p], selection)] for p in simulation]
            )
            edges = feature_edges(pooled, bins)
            stack = _region_histograms(shown, selection, feature, edges)
            data = stack.pop(DATA)[0] if DATA in stack else None
            if from_data:
                stack[qcd["process"]] = qcd_estimate(shown, region, selection, feature, edges, qcd)
            figures.append(functools.partial(
                plot_stack, edges, stack, data, style.labels.feature(feature),
                Path(output_dir) / f"{region}_{safe_name(feature)}", style,
                band_label="Stat. + QCD unc." if from_data else "Stat. unc.", title=region,
                blinded=_blinded(stack, blinding),
            ))  # fmt: skip
    return draw_figures(figures, workers)


def _blinded(
    stack: Mapping[str, tuple[np.ndarray, np.ndarray]], blinding: Mapping[str, Any] | None
) -> np.ndarray | None:
    """The bins of a stack to blind, or None when not blinding."""
    if not blinding:
        return None
    signals = set(blinding["signals"])
    nbins = len(next(iter(stack.values()))[0])
    signal = sum((c for p, (c, _) in stack.items() if p in signals), np.zeros(nbins))
    background = sum((c for p, (c, _) in stack.items() if p not in signals), np.zeros(nbins))
    return blinding_mask(signal, background, float(blinding["threshold"]))


def _cutflow(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    cutflows = read_cutflows(args.cutflows)
    markdown, latex = cutflow_tables(cutflows)
    write_text(args.markdown, markdown)
    write_text(args.latex, latex)
    plot_cutflow(cutflows, args.prefix, style)


def _features(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    regions = settings["regions"]
    # is_os: the same-sign events of the QCD estimate
    selection_columns = sorted({"is_os", *(name for cuts in regions.values() for name in cuts)})
    columns = list(dict.fromkeys([*args.features, *selection_columns]))
    events = load_events(args.skims, args.friends, args.processes, columns)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    plot_features(
        events, args.features, regions, int(settings["feature_bins"]), args.output_dir, style,
        json.loads(args.blinding), json.loads(args.qcd), args.workers,
    )  # fmt: skip


SUBCOMMANDS = {
    "cutflow": Subcommand(
        _cutflow,
        {"--cutflows": REQUIRED_LIST, "--prefix": REQUIRED, "--markdown": REQUIRED,
         "--latex": REQUIRED},
    ),
    "features": Subcommand(
        _features,
        {"--skims": REQUIRED_LIST, "--friends": REQUIRED_LIST, "--processes": REQUIRED_LIST,
         "--features": REQUIRED_LIST, "--output-dir": REQUIRED,
         "--blinding": {"default": "null",
                        "help": 'JSON {"signals": [...], "threshold": x}, or null'},
         "--qcd": {"default": "null",
                   "help": "the histograms.qcd section as JSON: QCD from same-sign data"},
         "--workers": WORKERS},
    ),
}  # fmt: skip


main = command_line("Cutflow and input-feature figures.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
