"""Bin edges per channel (config ``histograms.binning``), derived from the nominal simulation.

Fine bins of the classifier score are merged from the right until each bin has enough background
and MC statistics, or cut at quantiles of the signal; control regions and configured channels keep
fixed edges. Every variation of every sample is then filled with these edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.core.io import read_with_friends
from analysis.stats.channels import channels, passes, selection_columns


def merge_from_right(
    edges: np.ndarray,
    background: np.ndarray,
    background_sumw2: np.ndarray,
    min_background: float,
    max_relative_uncertainty: float,
) -> list[float]:
    """Merge fine bins from the right until each has enough background yield and MC statistics.

    Starting at the most signal-like (rightmost) bin, fine bins are added to the current bin until
    its background yield is at least ``min_background`` and its relative MC uncertainty at most
    ``max_relative_uncertainty``; a remainder on the left that never qualifies joins its right
    neighbour.
    """
    kept = [float(edges[-1])]
    total = total_sumw2 = 0.0
    for index in range(len(background) - 1, -1, -1):
        total += background[index]
        total_sumw2 += background_sumw2[index]
        if total >= min_background and np.sqrt(total_sumw2) <= max_relative_uncertainty * total:
            kept.append(float(edges[index]))
            total = total_sumw2 = 0.0
    if kept[-1] != float(edges[0]):
        if len(kept) > 1:
            kept[-1] = float(edges[0])  # the remainder joins its right neighbour
        else:
            kept.append(float(edges[0]))
    return kept[::-1]


def signal_quantile_edges(
    values: np.ndarray, weights: np.ndarray, n_bins: int, low: float, high: float
) -> list[float]:
    """Edges giving each bin the same signal yield (weighted quantiles), within [low, high]."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / np.sum(weights)
    inner = np.interp(np.arange(1, n_bins) / n_bins, cumulative, values[order])
    return [low, *sorted(set(np.round(inner, 6).tolist()) - {low, high}), high]


def derive_binning(
    inputs: Sequence[tuple[str, str, str, str]],
    settings: Mapping[str, Any],
    classes: Sequence[str],
) -> dict[str, list[float]]:
    """Bin edges per channel from nominal simulation in the signal region.

    Args:
        inputs: (process, skim, friend, scores) of every nominal simulated sample to consider.
        settings: the ``histograms`` config section.
        classes: the classifier classes (channel names).
    """
    binning = settings["binning"]
    chans = channels(settings, classes)
    fine = np.round(np.linspace(0.0, 1.0, binning["fine_bins"] + 1), 10)
    empty = np.zeros(len(fine) - 1)
    sums = {c.name: {"bkg": empty.copy(), "bkg2": empty.copy()} for c in chans}
    signal_values: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c.name: [] for c in chans}
    for process, skim, friend, scores in inputs:
        columns = read_with_friends(skim, [friend, scores], [*selection_columns(chans), "weight"])
        for channel in chans:
            if channel.category is None:
                continue
            mask = passes(columns, channel)
            values, weights = columns[channel.observable][mask], columns["weight"][mask]
            if process in settings["signals"]:
                signal_values[channel.name].append((values, weights))
            else:
                sums[channel.name]["bkg"] += np.histogram(values, fine, weights=weights)[0]
                sums[channel.name]["bkg2"] += np.histogram(values, fine, weights=weights**2)[0]
    edges = {}
    for channel in chans:
        fixed = (binning.get("edges") or {}).get(channel.name)
        if channel.category is None:
            edges[channel.name] = list(settings["control_regions"][channel.name]["edges"])
        elif fixed:
            edges[channel.name] = list(fixed)
        elif binning["mode"] == "signal_quantiles" and signal_values[channel.name]:
            values, weights = map(np.concatenate, zip(*signal_values[channel.name], strict=True))
            edges[channel.name] = signal_quantile_edges(values, weights, binning["bins"], 0.0, 1.0)
        else:
            edges[channel.name] = merge_from_right(
                fine, sums[channel.name]["bkg"], sums[channel.name]["bkg2"],
                binning["min_background"], binning["max_relative_uncertainty"],
            )  # fmt: skip
    return edges
