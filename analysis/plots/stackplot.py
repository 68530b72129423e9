"""The stacked-histogram figure shared by the input features and the pre-/post-fit stacks.

Processes are stacked with ``mplhep.histplot(..., stack=True)``, data drawn with Poisson (Garwood)
intervals (``mplhep.error_estimation.poisson_interval``), and a lower panel shows data over the
prediction with the prediction's uncertainty band around one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mplhep
import numpy as np
from mplhep.error_estimation import poisson_interval

from analysis.plots.style import (
    PlotStyle,
    draw_band,
    labelled_figure,
    process_colors,
    ratio_with_errors,
    save_figure,
)

#: Process name of the observed data (its legend text comes from ``plots.labels.processes``).
DATA = "data"


def plot_stack(
    edges: np.ndarray,
    stack: Mapping[str, tuple[np.ndarray, np.ndarray]],
    data: np.ndarray | None,
    xlabel: str,
    prefix: str | Path,
    style: PlotStyle,
    band: np.ndarray | None = None,
    band_label: str = "Stat. unc.",
    title: str | None = None,
    log: bool = False,
    blinded: np.ndarray | None = None,
) -> list[Path]:
    """Stacked processes with data points, an uncertainty band and a data/prediction ratio.

    Args:
        edges: bin edges.
        stack: process -> (counts, sum of squared weights); drawn smallest yield at the bottom,
            named in the legend by ``style.labels``.
        data: observed counts (Poisson intervals), or None.
        xlabel: x-axis title.
        prefix: output path without extension.
        style: the plot style.
        band: absolute uncertainty of the total prediction per bin; default the simulation's
            statistical one, sqrt(sum of squared weights).
        band_label: legend entry of the band.
        title: legend title (region or channel).
        log: logarithmic y axis.
        blinded: bins whose data are hidden (shaded and labelled); their data entries are ignored.
    """
    order = sorted(stack, key=lambda name: float(np.sum(stack[name][0])))
    total = (
        np.sum([stack[name][0] for name in order], axis=0) if order else np.zeros(len(edges) - 1)
    )
    if band is None:
        band = np.sqrt(np.sum([stack[name][1] for name in order], axis=0))
    ylabels = ("Events / bin", "Data / Pred." if data is not None else "Rel. unc.")
    fig, (ax, rax) = labelled_figure(style, ratio=True, data=data is not None, ylabels=ylabels)
    _draw_stack(ax, edges, stack, order, total, style)
    draw_band(ax, edges, total - band, total + band, band_label)
    if blinded is not None and np.any(blinded):
        _shade_blinded(ax, rax, edges, blinded)
        if data is not None:
            data = np.where(blinded, np.nan, np.asarray(data, dtype=float))
    if data is not None:
        _draw_data(ax, rax, edges, np.asarray(data, dtype=float), total, style)
    _draw_ratio_panel(rax, edges, total, band, xlabel)
    _finish_main_panel(ax, edges, total, log, title)
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
    mplhep.histplot(
        [stack[name][0] for name in order], edges, stack=True, histtype="fill", ax=ax,
        label=[style.labels.process(name) for name in order],
        color=[colors[name] for name in order], flow="none",
    )  # fmt: skip
    ax.stairs(total, edges, color="black", linewidth=1)


def _shade_blinded(ax: Any, rax: Any, edges: np.ndarray, blinded: np.ndarray) -> None:
    """Shade the blinded bins in both panels."""
    for i, k in enumerate(np.flatnonzero(blinded)):
        label = "Blinded" if i == 0 else None  # one legend entry for all blinded bins
        ax.axvspan(edges[k], edges[k + 1], color="0.85", zorder=0, label=label)
        rax.axvspan(edges[k], edges[k + 1], color="0.85", zorder=0)


def data_interval(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Garwood 68% interval (low, high) of observed (unweighted) counts; NaN bins stay NaN.

    A count of one is appended before calling mplhep, so that empty bins get the interval of an
    unweighted zero count even when every bin is empty.
    """
    hidden = ~np.isfinite(data)
    counts = np.append(np.where(hidden, 0.0, data), 1.0)
    low, high = poisson_interval(counts, counts)
    return np.where(hidden, np.nan, low[:-1]), np.where(hidden, np.nan, high[:-1])


def _draw_data(
    ax: Any, rax: Any, edges: np.ndarray, data: np.ndarray, total: np.ndarray, style: PlotStyle
) -> None:
    """Data points with Poisson intervals, and their ratio to the prediction in the lower panel."""
    low, high = data_interval(data)
    errors = np.array([data - low, high - data])
    options = {"histtype": "errorbar", "color": "black", "markersize": 5, "flow": "none"}
    mplhep.histplot(data, edges, yerr=errors, ax=ax, label=style.labels.process(DATA), **options)
    ratio, low_rel = ratio_with_errors(data, total, errors[0])
    _, high_rel = ratio_with_errors(data, total, errors[1])
    mplhep.histplot(ratio, edges, yerr=np.array([low_rel, high_rel]), ax=rax, **options)


def _draw_ratio_panel(
    rax: Any, edges: np.ndarray, total: np.ndarray, band: np.ndarray, xlabel: str
) -> None:
    """The prediction's relative uncertainty around one in the lower panel, and its x title."""
    one, band_rel = ratio_with_errors(total, total, band)
    draw_band(rax, edges, one - band_rel, one + band_rel, None)
    rax.axhline(1.0, color="gray", linestyle="--")
    # tick labels off the panel's edges, clear of the upper panel's lowest one and the x labels
    rax.set_ylim(0.4, 1.6)
    rax.set_yticks([0.6, 1.0, 1.4])
    rax.set_xlabel(xlabel)


def _finish_main_panel(
    ax: Any, edges: np.ndarray, total: np.ndarray, log: bool, title: str | None
) -> None:
    """Ranges of the upper panel, with room above the stack for the legend, and the legend."""
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("")
    handles, labels = ax.get_legend_handles_labels()
    # the legend's share of the panel height: its rows (two columns) and title, and a margin
    share = min(0.6, 0.08 * (-(-len(handles) // 2) + (title is not None)) + 0.05)
    if log:
        ax.set_yscale("log")
        bottom = max(0.1, 0.5 * float(np.min(total[total > 0], initial=1.0)))
        decades = np.log10(ax.get_ylim()[1] / bottom) + 0.3
        ax.set_ylim(bottom, bottom * 10 ** (decades / (1 - share)))
    else:
        ax.set_ylim(0, ax.get_ylim()[1] / (1 - share))
    ax.legend(handles[::-1], labels[::-1], ncol=2, fontsize="small", title=title)
