"""Export the pyhf workspace as a CMS combine datacard and its shapes file (``snakemake datacard``).

Written from the workspace JSON alone, so the datacard holds the same model the pyhf fits use:

- one combine bin per channel; its observation and ``data_obs`` are the workspace's observations
  (the Asimov prediction while the analysis is blinded, see :mod:`analysis.stats.blinding`);
- one process per sample, with the nominal yields as rates and shapes; the processes carrying the
  measurement's POI are the signals (ids <= 0), scaled by combine's ``r``;
- ``normsys`` as ``lnN`` with ``kappa_down/kappa_up``; the ``lumi`` modifier as a symmetric
  ``lnN`` of 1 + its relative uncertainty;
- a parameter with a ``histosys`` anywhere becomes one ``shape`` nuisance whose ``Up``/``Down``
  templates hold its full effect on each sample (histosys template x normsys factor), since
  combine takes a shape nuisance's normalisation from the templates and a name can have only one
  line;
- ``staterror`` as ``autoMCStats`` (threshold 0: Barlow-Beeston lite, as pyhf; signals included)
  with each sample's staterror in its nominal histogram's bin errors;
- other free normfactors as ``rateParam`` with the measurement's initial value and bounds.

pyhf's ``shapesys`` and ``shapefactor`` and fixed parameters have no counterpart here and stop
the export with one line. combine interpolates inside +-1 sigma differently from pyhf's codes, and
its lnN is a log-normal where pyhf's lumi constraint is Gaussian: the models agree at the nominal
and +-1 sigma points, which is what the tests check.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hist
import numpy as np
import uproot

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path, read_json
from analysis.core.tables import write_text

log = logging.getLogger(__name__)

#: combine's line naming the shapes of every process of every bin in the shapes file.
SHAPES = "shapes * * {file} $CHANNEL/$PROCESS $CHANNEL/$PROCESS_$SYSTEMATIC"
#: name of the observed (or, while blinded, Asimov) data in each channel's directory
DATA_OBS = "data_obs"
#: pyhf's default bounds and initial value of a normfactor without a parameter configuration
NORMFACTOR_BOUNDS, NORMFACTOR_INIT = (0.0, 10.0), 1.0

Column = tuple[str, str]  # (channel, process)


@dataclass
class Card:
    """The datacard's content, gathered from a pyhf workspace."""

    poi: str
    poi_bounds: tuple[float, float]
    observations: dict[str, np.ndarray] = field(default_factory=dict)
    nominal: dict[Column, np.ndarray] = field(default_factory=dict)
    #: staterror variance per bin (0 without a staterror), for autoMCStats
    variances: dict[Column, np.ndarray] = field(default_factory=dict)
    signals: list[str] = field(default_factory=list)
    backgrounds: list[str] = field(default_factory=list)
    #: lnN nuisance -> column -> (kappa_down, kappa_up); kappa_down None: symmetric
    lnn: dict[str, dict[Column, tuple[float | None, float]]] = field(default_factory=dict)
    #: shape nuisance -> column -> (up template, down template)
    shapes: dict[str, dict[Column, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    #: rateParam -> (initial value, low, high, columns it scales)
    rate_params: dict[str, tuple[float, float, float, list[Column]]] = field(default_factory=dict)
    #: channels with an autoMCStats line
    mc_stats: list[str] = field(default_factory=list)

    def process_id(self, process: str) -> int:
        """combine's process index: 0, -1, ... for signals, 1, 2, ... for backgrounds."""
        if process in self.signals:
            return -self.signals.index(process)
        return self.backgrounds.index(process) + 1


# --- from the workspace -----------------------------------------------------------------------


def card_from_workspace(spec: Mapping[str, Any], measurement: str | None = None) -> Card:
    """The datacard content of a pyhf workspace specification.

    Args:
        spec: the workspace JSON (channels, observations, measurements).
        measurement: the measurement whose POI and parameter settings are used (None: the first).

    Raises:
        AnalysisError: a modifier or setting has no combine counterpart here, or a process carries
            the POI in some channels only.
    """
    config = _measurement(spec, measurement)["config"]
    parameters = {parameter["name"]: parameter for parameter in config.get("parameters", [])}
    _check_not_fixed(parameters)
    poi = config["poi"]
    card = Card(poi, _bounds(parameters.get(poi)))
    observed = {obs["name"]: np.asarray(obs["data"], float) for obs in spec.get("observations", [])}
    effects: dict[str, dict[Column, dict[str, Any]]] = {}
    carriers: dict[str, set[str]] = {}
    for channel in spec["channels"]:
        name = channel["name"]
        if name not in observed:
            raise AnalysisError(f"workspace: no observations of channel '{name}'")
        card.observations[name] = observed[name]
        for sample in channel["samples"]:
            column = (name, sample["name"])
            card.nominal[column] = np.asarray(sample["data"], float)
            card.variances[column] = np.zeros_like(card.nominal[column])
            for modifier in sample["modifiers"]:
                if modifier["type"] == "normfactor" and modifier["name"] == poi:
                    carriers.setdefault(sample["name"], set()).add(name)
                else:
                    _add_modifier(card, column, modifier, parameters, effects)
    _set_processes(card, carriers)
    for nuisance, by_column in effects.items():
        _add_nuisance(card, nuisance, by_column)
    return card


def _measurement(spec: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    measurements = spec.get("measurements", [])
    if not measurements:
        raise AnalysisError("workspace: no measurement; it names the POI the datacard needs")
    if name is None:
        return measurements[0]
    for measurement in measurements:
        if measurement["name"] == name:
            return measurement
    raise AnalysisError(
        f"workspace: no measurement '{name}' (it has {', '.join(m['name'] for m in measurements)})"
    )


def _check_not_fixed(parameters: Mapping[str, Any]) -> None:
    fixed = sorted(name for name, parameter in parameters.items() if parameter.get("fixed"))
    if fixed:
        raise AnalysisError(
            f"workspace: fixed parameters ({', '.join(fixed)}) are not exported to a datacard; "
            "unfix them in the measurement or freeze them in combine"
        )


def _bounds(parameter: Mapping[str, Any] | None) -> tuple[float, float]:
    bounds = (parameter or {}).get("bounds")
    return (float(bounds[0][0]), float(bounds[0][1])) if bounds else NORMFACTOR_BOUNDS


def _add_modifier(
    card: Card,
    column: Column,
    modifier: Mapping[str, Any],
    parameters: Mapping[str, Any],
    effects: dict[str, dict[Column, dict[str, Any]]],
) -> None:
    """Record one modifier of one sample (the POI's normfactors are handled by the caller)."""
    kind, name = modifier["type"], modifier["name"]
    if kind in ("normsys", "histosys"):
        effects.setdefault(name, {}).setdefault(column, {})[kind] = modifier["data"]
    elif kind == "lumi":
        parameter = parameters.get(name)
        if not parameter or "sigmas" not in parameter:
            raise AnalysisError(f"workspace: no uncertainty (sigmas) of lumi parameter '{name}'")
        kappa = 1 + parameter["sigmas"][0] / parameter.get("auxdata", [1.0])[0]
        card.lnn.setdefault(name, {})[column] = (None, float(kappa))
    elif kind == "staterror":
        card.variances[column] = np.asarray(modifier["data"], float) ** 2
        if column[0] not in card.mc_stats:
            card.mc_stats.append(column[0])
    elif kind == "normfactor":
        parameter = parameters.get(name) or {}
        low, high = _bounds(parameter)
        init = float(parameter.get("inits", [NORMFACTOR_INIT])[0])
        card.rate_params.setdefault(name, (init, low, high, []))[3].append(column)
    else:
        raise AnalysisError(
            f"workspace: modifier '{name}' ({kind}) on {column[1]} in {column[0]} has no combine "
            "counterpart in this export; only normfactor, normsys, histosys, lumi and staterror"
        )


def _set_processes(card: Card, carriers: Mapping[str, set[str]]) -> None:
    """Signals (the processes carrying the POI, in every channel they appear in) and
    backgrounds, in order of first appearance."""
    for process in dict.fromkeys(process for _, process in card.nominal):
        channels = {channel for channel, name in card.nominal if name == process}
        if process not in carriers:
            card.backgrounds.append(process)
        elif carriers[process] == channels:
            card.signals.append(process)
        else:
            missing = sorted(channels - carriers[process])
            raise AnalysisError(
                f"workspace: {process} carries the POI {card.poi} but not in {', '.join(missing)}; "
                "combine's r scales a signal process in every channel"
            )
    if not card.signals:
        raise AnalysisError(f"workspace: no sample carries the POI {card.poi}")


def _add_nuisance(card: Card, name: str, by_column: Mapping[Column, Mapping[str, Any]]) -> None:
    """A normsys-only parameter as lnN; one with a histosys anywhere as a shape nuisance whose
    templates carry both effects on every sample it touches."""
    if not any("histosys" in kinds for kinds in by_column.values()):
        card.lnn[name] = {
            column: (float(kinds["normsys"]["lo"]), float(kinds["normsys"]["hi"]))
            for column, kinds in by_column.items()
        }
        return
    templates = {}
    for column, kinds in by_column.items():
        nominal = card.nominal[column]
        histosys = kinds.get("histosys", {"hi_data": nominal, "lo_data": nominal})
        normsys = kinds.get("normsys", {"hi": 1.0, "lo": 1.0})
        up = np.asarray(histosys["hi_data"], float) * normsys["hi"]
        down = np.asarray(histosys["lo_data"], float) * normsys["lo"]
        templates[column] = (up, down)
    card.shapes[name] = templates


# --- writing ----------------------------------------------------------------------------------


def _number(value: float) -> str:
    return format(float(value), ".12g")


def _histogram(values: np.ndarray, variances: np.ndarray, edges: Sequence[float]) -> hist.Hist:
    histogram = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    histogram.view().value = values
    histogram.view().variance = variances
    return histogram


def _edges(channel: str, nbins: int, binning: Mapping[str, Sequence[float]] | None) -> list:
    """The channel's bin edges from ``binning.json``, or the bin indices without it."""
    if binning is None:
        return list(range(nbins + 1))
    edges = binning.get(channel)
    if edges is None or len(edges) != nbins + 1:
        raise AnalysisError(
            f"binning: channel '{channel}' has no {nbins}-bin edges; the workspace and "
            "binning.json come from different runs, rerun the workspace"
        )
    return list(edges)


def write_shapes(
    path: str, card: Card, binning: Mapping[str, Sequence[float]] | None = None
) -> None:
    """The shapes file, atomically: per channel ``data_obs``, each process's nominal (bin errors:
    its staterror) and ``<process>_<nuisance>Up``/``Down`` of every shape nuisance."""
    items = {}
    for channel, observed in card.observations.items():
        edges = _edges(channel, len(observed), binning)
        items[f"{channel}/{DATA_OBS}"] = _histogram(observed, observed, edges)
        for (chan, process), nominal in card.nominal.items():
            if chan == channel:
                variances = card.variances[(chan, process)]
                items[f"{channel}/{process}"] = _histogram(nominal, variances, edges)
        for name, templates in card.shapes.items():
            for (chan, process), (up, down) in templates.items():
                if chan == channel:
                    zero = np.zeros_like(up)
                    items[f"{channel}/{process}_{name}Up"] = _histogram(up, zero, edges)
                    items[f"{channel}/{process}_{name}Down"] = _histogram(down, zero, edges)
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as output:
            for key in sorted(items):
                output[key] = items[key]


def datacard_text(card: Card, shapes_file: str, header: Sequence[str] = ()) -> str:
    """The datacard: header comments, counts, shapes line, observations, processes and rates,
    nuisances, then rateParams and autoMCStats."""
    columns = list(card.nominal)
    rows = [("bin", [c for c, _ in columns]), ("process", [p for _, p in columns])]
    rows += [("process", [str(card.process_id(p)) for _, p in columns])]
    rows += [("rate", [_number(card.nominal[column].sum()) for column in columns])]
    nuisances = [(f"{n} lnN", [_kappa(card.lnn[n].get(c)) for c in columns])
                 for n in sorted(card.lnn)]  # fmt: skip
    nuisances += [(f"{n} shape", ["1" if c in card.shapes[n] else "-" for c in columns])
                  for n in sorted(card.shapes)]  # fmt: skip
    rule = "-" * 80
    lines = [f"# {line}" for line in header]
    lines += [
        f"imax {len(card.observations)} number of channels",
        f"jmax {len(card.signals) + len(card.backgrounds) - 1} number of processes minus 1",
        f"kmax {len(nuisances)} number of nuisance parameters",
        rule,
        SHAPES.format(file=shapes_file),
        rule,
        *_aligned([("bin", list(card.observations)),
                   ("observation", [_number(v.sum()) for v in card.observations.values()])]),
        rule,
        *_aligned(rows + nuisances, separate=len(rows)),
    ]  # fmt: skip
    extras = [
        f"{name} rateParam {channel} {process} {_number(init)} [{_number(low)},{_number(high)}]"
        for name, (init, low, high, targets) in card.rate_params.items()
        for channel, process in targets
    ]
    extras += [f"{channel} autoMCStats 0 1" for channel in card.mc_stats]
    if extras:
        lines += [rule, *extras]
    return "\n".join(lines) + "\n"


def _kappa(effect: tuple[float | None, float] | None) -> str:
    if effect is None:
        return "-"
    down, up = effect
    return _number(up) if down is None else f"{_number(down)}/{_number(up)}"


def _aligned(rows: Sequence[tuple[str, Sequence[str]]], separate: int | None = None) -> list[str]:
    """Rows as aligned columns; with ``separate``, a rule line after that many rows."""
    label = max(len(name) for name, _ in rows)
    width = max(len(value) for _, values in rows for value in values)
    lines = [
        f"{name:<{label}}  " + " ".join(f"{value:<{width}}" for value in values).rstrip()
        for name, values in rows
    ]
    if separate is not None and separate < len(lines):
        lines.insert(separate, "-" * 80)
    return lines


def header_lines(card: Card, source: str, unblind: bool) -> list[str]:
    """What a reader of the datacard needs before combine: source, POI and its range, data."""
    low, high = card.poi_bounds
    return [
        f"CMS combine datacard of the pyhf workspace {source} (analysis/stats/datacard.py)",
        f"POI {card.poi} is combine's r, on {', '.join(card.signals)}; its range: "
        f"--setParameterRanges r={_number(low)},{_number(high)}",
        "data_obs: the observed data" if unblind else
        "BLINDED: data_obs is the Asimov prediction (r = 1, nuisances nominal), not data",
    ]  # fmt: skip


# --- command line -----------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The pyhf workspace as a combine datacard.")
    parser.add_argument("--workspace", required=True, help="pyhf JSON workspace")
    parser.add_argument("--binning", help="binning.json: bin edges per channel (else bin indices)")
    parser.add_argument("--unblind", action="store_true", help="config unblind (header only)")
    parser.add_argument("--datacard", required=True, help="datacard text file")
    parser.add_argument("--shapes", required=True, help="shapes ROOT file, beside the datacard")
    args = parser.parse_args(argv)
    card = card_from_workspace(read_json(args.workspace))
    write_shapes(args.shapes, card, read_json(args.binning) if args.binning else None)
    shapes_file = os.path.relpath(args.shapes, os.path.dirname(os.path.abspath(args.datacard)))
    text = datacard_text(card, shapes_file, header_lines(card, args.workspace, args.unblind))
    write_text(args.datacard, text)
    log.info(
        "datacard: %d channels, %d processes (signals %s), %d lnN and %d shape nuisances, "
        "%d rateParams", len(card.observations), len(card.signals) + len(card.backgrounds),
        card.signals, len(card.lnn), len(card.shapes), len(card.rate_params),
    )  # fmt: skip


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
