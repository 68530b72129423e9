"""Cutflow (figure and tables) and input-feature distributions (data vs stacked simulation).

Reads the preselection's ``*.cutflow.json`` files and the nominal skims with their friend trees
(event weight ``weight``). Feature figures are made per region (``plots.regions``), with a
data/simulation ratio panel and the simulation's statistical uncertainty as a band. While the
analysis is blinded, data are hidden in every bin whose expected signal-to-background ratio
exceeds the histograms' threshold, as in the fitted histograms.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_with_friends
from analysis.core.tables import latex_row, markdown_table, tex, write_text
from analysis.plots.cli import REQUIRED, REQUIRED_LIST, Subcommand, command_line
from analysis.plots.style import (
    PlotStyle,
    add_label,
    draw_band,
    new_figure,
    process_colors,
    ratio_with_errors,
    safe_name,
    save_figure,
)
from analysis.stats.channels import selection_mask
from analysis.stats.histograms import blinding_mask

#: Name of the process of collision data in the ``--processes`` list.
DATA = "data"


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
        ax.plot(np.arange(len(cuts)), efficiency, label=sample, **line)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(cuts)), cuts, rotation=30, ha="right")
    ax.minorticks_off()
    ax.set_ylabel("Cumulative efficiency")
    ax.legend(ncol=2, fontsize="small")
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


def plot_stack(
    edges: np.ndarray,
    stack: Mapping[str, tuple[np.ndarray, np.ndarray]],
    data: np.ndarray | None,
    xlabel: str,
    prefix: str,
    style: PlotStyle,
    band: np.ndarray | None = None,
    band_label: str = "Stat. unc.",
    title: str | None = None,
    log: bool = False,
    blinded: np.ndarray | None = None,
) -> list[Path]:
    """Stacked simulation with data points, an uncertainty band and a data/prediction ratio.

    Args:
        edges: bin edges.
        stack: process -> (counts, sum of squared weights); drawn smallest yield at the bottom.
        data: observed counts (Poisson errors), or None.
        xlabel: x-axis title.
        prefix: output path without extension.
        style: the plot style.
        band: absolute uncertainty of the total prediction per bin; default the simulation's
            statistical one, sqrt(sum of squared weights).
        band_label: legend entry of the band.
        title: text in the top-left corner of the axes (region or channel).
        log: logarithmic y axis.
        blinded: bins whose data are hidden (shaded and labelled); their data entries are ignored.
    """
    order = sorted(stack, key=lambda name: float(np.sum(stack[name][0])))
    total = (
        np.sum([stack[name][0] for name in order], axis=0) if order else np.zeros(len(edges) - 1)
    )
    if band is None:
        band = np.sqrt(np.sum([stack[name][1] for name in order], axis=0))
    fig, (ax, rax) = new_figure(style, ratio=True)
    _draw_stack(ax, edges, stack, order, total, style)
    draw_band(ax, edges, total - band, total + band, band_label)
    if blinded is not None and np.any(blinded):
        _shade_blinded(ax, rax, edges, blinded)
        if data is not None:
            data = np.where(blinded, np.nan, np.asarray(data, dtype=float))
    if data is not None:
        _draw_data(ax, rax, edges, np.asarray(data, dtype=float), total)
    _draw_ratio_panel(rax, edges, total, band, xlabel, data is not None)
    _finish_main_panel(ax, edges, total, log, title)
    add_label(ax, style, data=data is not None)
    return save_figure(fig, prefix, style)


def _draw_stack(
    ax: Any,
    edges: np.ndarray,
    stack: Mapping[str, tuple[np.ndarray, np.ndarray]],
    order: Sequence[str],
    total: np.ndarray,
    style: PlotStyle,
) -> None:
    """The processes stacked in ``order`` (bottom first) and their total as a line."""
    if not order:
        return
    colors = process_colors(sorted(stack), style)
    ax.stackplot(
        edges, *[np.append(stack[name][0], stack[name][0][-1]) for name in order],
        step="post", labels=order, colors=[colors[name] for name in order],
    )  # fmt: skip
    ax.stairs(total, edges, color="black", linewidth=1)


def _shade_blinded(ax: Any, rax: Any, edges: np.ndarray, blinded: np.ndarray) -> None:
    """Shade the blinded bins in both panels."""
    for i, k in enumerate(np.flatnonzero(blinded)):
        label = "Blinded" if i == 0 else None  # one legend entry for all blinded bins
        ax.axvspan(edges[k], edges[k + 1], color="0.85", zorder=0, label=label)
        rax.axvspan(edges[k], edges[k + 1], color="0.85", zorder=0)


def _draw_data(ax: Any, rax: Any, edges: np.ndarray, data: np.ndarray, total: np.ndarray) -> None:
    """Data points with Poisson errors, and their ratio to the prediction in the lower panel."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(
        centres, data, yerr=np.sqrt(data), fmt="o", color="black", label="Data", markersize=5
    )
    ratio, ratio_err = ratio_with_errors(data, total, np.sqrt(data))
    rax.errorbar(centres, ratio, yerr=ratio_err, fmt="o", color="black", markersize=5)


def _draw_ratio_panel(
    rax: Any, edges: np.ndarray, total: np.ndarray, band: np.ndarray, xlabel: str, data: bool
) -> None:
    """The prediction's relative uncertainty around one in the lower panel, and its titles."""
    one, band_rel = ratio_with_errors(total, total, band)
    draw_band(rax, edges, one - band_rel, one + band_rel, None)
    rax.axhline(1.0, color="gray", linestyle="--")
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("Data / Pred." if data else "Rel. unc.")
    rax.set_xlabel(xlabel)


def _finish_main_panel(
    ax: Any, edges: np.ndarray, total: np.ndarray, log: bool, title: str | None
) -> None:
    """Ranges of the upper panel, with room above the stack for the legend, and the legend."""
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel("Events / bin")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(0.1, 0.5 * float(np.min(total[total > 0], initial=1.0))))
        ax.set_ylim(top=ax.get_ylim()[1] * 100)
    else:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.4)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], ncol=2, fontsize="small", title=title)


def plot_features(
    events: Mapping[str, Mapping[str, np.ndarray]],
    features: Sequence[str],
    regions: Mapping[str, Mapping[str, Any]],
    bins: int,
    output_dir: str | Path,
    style: PlotStyle,
    blinding: Mapping[str, Any] | None = None,
) -> list[Path]:
    """One stacked figure per region and feature, ``{region}_{feature}`` in ``output_dir``.

    Binning is chosen from the simulation in each region, so data never shapes its own binning.
    With ``blinding`` (``signals``: signal processes, ``threshold``: the S/B above which a bin is
    blinded), data are hidden where the simulation expects S/B above the threshold.
    """
    written: list[Path] = []
    simulation = [process for process in events if process != DATA]
    if not simulation:
        raise AnalysisError("no simulated sample among the inputs; check the samples file")
    for region, selection in regions.items():
        missing = [name for name in selection if name not in events[simulation[0]]]
        if missing:
            raise AnalysisError(
                f"plots.regions.{region}: column {missing[0]!r} is not in the skims"
            )
        masks = {process: selection_mask(columns, selection) for process, columns in events.items()}
        for feature in features:
            pooled = np.concatenate([events[p][feature][masks[p]] for p in simulation])
            edges = feature_edges(pooled, bins)
            stack = {
                process: _fill(
                    events[process][feature][masks[process]],
                    events[process]["weight"][masks[process]],
                    edges,
                )
                for process in simulation
            }
            data = None
            if DATA in events:
                data = _fill(
                    events[DATA][feature][masks[DATA]],
                    np.ones(int(masks[DATA].sum())),
                    edges,
                )[0]
            written += plot_stack(
                edges, stack, data, feature, Path(output_dir) / f"{region}_{safe_name(feature)}",
                style, title=region, blinded=_blinded(stack, blinding),
            )  # fmt: skip
    return written


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
    selection_columns = sorted({name for cuts in regions.values() for name in cuts})
    columns = list(dict.fromkeys([*args.features, *selection_columns]))
    events = load_events(args.skims, args.friends, args.processes, columns)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    plot_features(
        events, args.features, regions, int(settings["feature_bins"]), args.output_dir, style,
        json.loads(args.blinding),
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
                        "help": 'JSON {"signals": [...], "threshold": x}, or null'}},
    ),
}  # fmt: skip


main = command_line("Cutflow and input-feature figures.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
