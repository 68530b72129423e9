"""Histograms and workspaces of the input-variable goodness-of-fit tests (config ``gof``).

A test histograms one input variable (1D) or a pair of them (2D, the product of the two
binnings) in the analysis's signal region (``histograms.signal_region``; ``gof.region`` may name
a control region instead, see :func:`analysis.stats.input_gof.region_histograms`), each variable
in ``gof.bins`` bins equally populated in the data (in the nominal simulation while the test
runs on Asimov data, so that a blinded analysis never looks at its data). The histograms are
filled, merged and turned into a workspace exactly as the analysis's: every sample and
variation, QCD from same-sign data (:func:`analysis.stats.histograms.merge`), the same modifiers
and normalisations (:func:`analysis.stats.workspace.build_workspace`). The observable of a
test's channel is the bin index of its events (a derived column), so one filling path serves 1D
and 2D tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import hist
import numpy as np

from analysis.core.config import NOMINAL, is_simulation
from analysis.core.errors import AnalysisError
from analysis.core.io import read_with_friends
from analysis.stats.channels import Channel, passes, same_sign, selection_columns
from analysis.stats.histograms import (
    DATA,
    blinded_bins,
    fill_columns,
    merge,
    named_histograms,
    sample_weight_variations,
)
from analysis.stats.workspace import build_workspace

log = logging.getLogger(__name__)

#: The derived column holding an event's bin of the test (its channel's observable).
INDEX = "gof_bin"


class SampleColumns(NamedTuple):
    """One sample's entry in the samples file and its columns per variation."""

    name: str
    spec: Mapping[str, Any]
    columns: Mapping[str, Mapping[str, np.ndarray]]
    #: weight variation -> friend column of its nominal tree (the sample's era's)
    weight_variations: Mapping[str, str] = {}
    #: the sample's era (several eras), else None
    era: str | None = None


def channel_name(variables: Sequence[str]) -> str:
    """The channel name of a test: the variable, or ``a_vs_b`` for a pair."""
    return "_vs_".join(variables)


def read_samples(
    manifest: Mapping[str, Any],
    variables: Sequence[str],
    settings: Mapping[str, Any],
) -> list[SampleColumns]:
    """The columns a chunk of tests needs, per sample and variation.

    Args:
        manifest: sample -> ``{"spec": entry in the samples file, "era": its era (or None),
            "weights": the ``weights`` section of its era (names the weight variations),
            "files": {variation: [skim, weight friend, score friend]}}``.
        variables: the variables of the chunk's tests.
        settings: the ``histograms`` config section (the signal region).
    """
    region = _channel("region", settings)
    needed = {*selection_columns([region]), *variables} - {INDEX}
    result = []
    for name, entry in sorted(manifest.items()):
        spec = entry["spec"]
        weight_variations = sample_weight_variations(spec, entry["weights"])
        columns = {}
        for variation, (skim, friend, scores) in entry["files"].items():
            weight_columns = {"weight"}
            if variation == NOMINAL:
                weight_columns |= set(weight_variations.values())
            columns[variation] = read_with_friends(
                skim, [friend, scores], sorted(needed | weight_columns)
            )
        result.append(SampleColumns(name, spec, columns, weight_variations, entry.get("era")))
    return result


def _channel(name: str, settings: Mapping[str, Any]) -> Channel:
    """A test's channel: the signal region, the bin index as observable."""
    return Channel(name, settings["signal_region"], INDEX)


def quantile_edges(values: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """Edges of at most ``bins`` bins holding equal (weighted) yields; repeated quantiles (a
    discrete variable) merge their bins. A single value holding at least one bin's share (a
    discrete value, or the default of a variable undefined for some events, such as the second
    jet's pT in events with fewer jets) gets a bin of its own and the other values share the
    remaining bins, so that a test is not left with one bin. The outer edges are the extreme
    values."""
    values, weights = np.asarray(values, dtype=float), np.abs(np.asarray(weights, dtype=float))
    if len(values) == 0 or weights.sum() <= 0:
        return np.array([0.0, 1.0])
    distinct, where = np.unique(values, return_inverse=True)
    share = np.bincount(where, weights=weights) / weights.sum()
    spikes = distinct[share >= 1.0 / bins]
    rest = ~np.isin(values, spikes)
    edges = [values.min(), values.max()]
    for spike in spikes:  # the bin [spike, next value)
        above = distinct[distinct > spike]
        edges += [spike, above[0] if len(above) else spike + 1.0]
    if np.any(rest) and weights[rest].sum() > 0 and bins > len(spikes):
        edges += _quantiles(values[rest], weights[rest], bins - len(spikes)).tolist()
    edges = np.unique(edges)
    return edges if len(edges) > 1 else np.array([edges[0], edges[0] + 1.0])


def _quantiles(values: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """The edges of ``bins`` equally populated bins, the extreme values included."""
    order = np.argsort(values, kind="stable")
    # each event counted at its middle, so that equal weights split exactly between events
    cumulative = (np.cumsum(weights[order]) - 0.5 * weights[order]) / weights.sum()
    inner = np.interp(np.arange(1, bins) / bins, cumulative, values[order])
    return np.r_[values.min(), inner, values.max()]


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value, ``[low, high)`` bins, values beyond the ends in the outer bins."""
    index = np.searchsorted(edges, values, side="right") - 1
    return np.clip(index, 0, len(edges) - 2)


def variable_edges(
    samples: Sequence[SampleColumns],
    variables: Sequence[str],
    settings: Mapping[str, Any],
    bins: int,
    observed: bool,
) -> dict[str, np.ndarray]:
    """Equally populated edges of each variable in the signal region: in the data when
    ``observed``, else in the nominal simulation (the data stays unseen while blinded)."""
    region = _channel("region", settings)
    qcd = settings["qcd"]
    picked: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in variables}
    for sample in samples:
        process = sample.spec.get("process", DATA) if is_simulation(sample.spec) else DATA
        replaced = qcd["from_data"] and process == qcd["process"]
        if (process == DATA) != observed or replaced or "alternative" in sample.spec:
            continue
        columns = sample.columns[NOMINAL]
        mask = passes(columns, region)
        for name in variables:
            picked[name].append((columns[name][mask], columns["weight"][mask]))
    edges = {}
    for name, parts in picked.items():
        values = np.concatenate([v for v, _ in parts]) if parts else np.zeros(0)
        weights = np.concatenate([w for _, w in parts]) if parts else np.zeros(0)
        edges[name] = quantile_edges(values, np.ones_like(values) if observed else weights, bins)
    return edges


def settings_of(
    variables: Sequence[str], settings: Mapping[str, Any], n_bins: int
) -> dict[str, Any]:
    """The ``histograms`` settings of one test: its channel as the only region."""
    region = {"selection": settings["signal_region"], "observable": INDEX,
              "edges": np.arange(n_bins + 1, dtype=float).tolist()}  # fmt: skip
    return {**settings, "control_regions": {channel_name(variables): region}}


def fill_test(
    samples: Sequence[SampleColumns],
    variables: Sequence[str],
    edges: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
) -> tuple[list[dict[str, hist.Hist]], int]:
    """Per sample, the test's histograms named ``{channel}/{process}/{variation}`` as the
    analysis's histograms stage names them, and the number of bins."""
    sizes = [len(edges[name]) - 1 for name in variables]
    n_bins = int(np.prod(sizes))
    channel = _channel(channel_name(variables), settings)
    chans = [channel, same_sign(channel)]
    per_sample = []
    for sample in samples:
        per_sample.append(_fill_sample(sample, variables, edges, sizes, chans))
    return per_sample, n_bins


def _fill_sample(
    sample: SampleColumns,
    variables: Sequence[str],
    edges: Mapping[str, np.ndarray],
    sizes: Sequence[int],
    chans: Sequence[Channel],
) -> dict[str, hist.Hist]:
    """One sample's histograms of a test (the labels of
    :func:`analysis.stats.histograms.fill_sample`)."""
    spec = sample.spec
    process = spec.get("process", DATA) if is_simulation(spec) else DATA
    alternative = spec.get("alternative")
    n_bins = int(np.prod(sizes))
    channel_edges = {chans[0].name: np.arange(n_bins + 1, dtype=float)}
    result = {}
    for variation, columns in sample.columns.items():
        weight_variations = {NOMINAL: "weight"}
        if variation == NOMINAL:
            weight_variations.update(sample.weight_variations)
        index = np.zeros(len(columns["weight"]), dtype=np.int64)
        for name, size in zip(variables, sizes, strict=True):
            index = index * size + bin_index(columns[name], edges[name])
        derived = {**columns, INDEX: index.astype(float) + 0.5}
        regions = chans if variation == NOMINAL else chans[:1]
        filled = fill_columns(derived, regions, channel_edges, weight_variations)
        result.update(named_histograms(filled, process, variation, alternative))
    return result


def workspace_of(
    per_sample: Sequence[Mapping[str, hist.Hist]],
    variables: Sequence[str],
    n_bins: int,
    settings: Mapping[str, Any],
    workspace_settings: Mapping[str, Any],
    observed: bool,
    blind_threshold: float | None = None,
    eras: Mapping[str, Any] | None = None,
    sample_eras: Sequence[str] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The test's pyhf workspace (samples summed, QCD from same-sign data, the analysis's
    modifiers; the observations are the data when ``observed``, else the Asimov prediction) and
    which of the test's bins it holds: bins without any predicted event are left out (see
    :func:`predicted_bins`), and with ``blind_threshold`` (given while the analysis is blinded
    and the data are tested) the bins expecting a larger signal-to-background ratio, as the
    analysis blinds them.

    With several eras (``eras``: their settings with merged channels, ``sample_eras``: the era
    of each sample), the test's one channel sums the eras as the analysis's merged channels do:
    each era's luminosity and decorrelated parameters, an era without a variation at its nominal.

    Raises:
        AnalysisError: every bin of the test is blinded.
    """
    histogram_settings = settings_of(variables, settings, n_bins)
    if eras is not None:
        histogram_settings = {**histogram_settings, "eras": eras}
    merged = merge(per_sample, histogram_settings, [], blind=False, sample_eras=sample_eras)
    predicted = predicted_bins(merged.histograms)
    kept = predicted
    name = channel_name(variables)
    if blind_threshold is not None:
        sensitive = blinded_bins(merged.histograms, name, settings["signals"], blind_threshold)
        if np.all(sensitive | ~kept):
            raise AnalysisError(
                f"gof test {name}: every bin expects signal/background above "
                f"histograms.blind_threshold ({blind_threshold}) and the analysis is blinded "
                "(unblind: false); choose a gof.region without signal, or gof.data: pseudo"
            )
        if np.any(sensitive & kept):
            log.warning(
                "%s: %d of %d bins expect signal/background above histograms.blind_threshold; "
                "blinded, they are left out of the test", name,
                np.count_nonzero(sensitive & kept), len(kept),
            )  # fmt: skip
        kept = kept & ~sensitive
    data = merged.histograms.get(f"{name}/{DATA}/{NOMINAL}")
    lost = 0.0 if data is None or not observed else float(data.values()[~predicted].sum())
    if lost > 0:
        log.warning("%s: %g data events in bins without prediction, left out", name, lost)
    histograms = {key: _Bins(h, kept) for key, h in merged.histograms.items()}
    spec, _ = build_workspace(
        histograms, workspace_settings, histogram_settings, unblind=observed, eras=eras
    )
    return spec, kept


def predicted_bins(histograms: Mapping[str, hist.Hist]) -> np.ndarray:
    """Bins with a positive nominal prediction. A product bin of a pair may be empty in the
    simulation; it holds no information on the model, and its zero expectation has no
    finite -2 log L derivatives (data there would make the statistic infinite anyway)."""
    total = sum(
        np.asarray(h.values(), dtype=float)
        for name, h in histograms.items()
        if name.endswith(f"/{NOMINAL}") and name.split("/")[1] != DATA
    )
    return np.asarray(total > 0)


class _Bins:
    """A histogram's values and variances in some of its bins (what the workspace reads)."""

    def __init__(self, histogram: hist.Hist, kept: np.ndarray):
        self._values = np.asarray(histogram.values(), dtype=float)[kept]
        self._variances = np.asarray(histogram.variances(), dtype=float)[kept]

    def values(self) -> np.ndarray:
        return self._values

    def variances(self) -> np.ndarray:
        return self._variances
