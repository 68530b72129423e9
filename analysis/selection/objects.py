"""The per-event objects of one chunk that the selection and the shape variations work on, and
the per-event weight inputs the skims carry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from analysis.core.config import active_weight_variations, weight_columns
from analysis.core.errors import AnalysisError
from analysis.core.io import EVENT_KEYS
from analysis.core.variations import both
from analysis.selection.nanoaod import column, field


class WeightInputs:
    """The raw per-event weight inputs of a sample (skim columns ``w_*``; none for data).

    Args:
        weights: the config section ``weights``.
        simulation: whether the sample is simulated.
    """

    def __init__(self, weights: Mapping[str, Any], simulation: bool) -> None:
        self.simulation = simulation
        self.sources = weight_columns(weights) if simulation else {}
        self.acceptance_only = [
            name
            for name, spec in active_weight_variations(weights).items()
            if spec.get("acceptance_only")
        ]

    def generator(self, events: ak.Array) -> ak.Array:
        """The generator weight (branch ``weights.generator``, skim column ``w_gen``)."""
        return column(events, self.sources["w_gen"])

    def columns(self, events: ak.Array) -> dict[str, ak.Array]:
        """Every weight input of every event, by skim column."""
        return {name: _weight_input(events, source) for name, source in self.sources.items()}

    def sums(self, events: ak.Array) -> dict[str, float]:
        """Sums over all events of the generator weight and its acceptance variations."""
        if not self.simulation:
            return {"events": float(len(events))}
        gen = np.asarray(self.generator(events), dtype=np.float64)
        sums = {"events": float(len(events)), "genWeight": float(gen.sum())}
        for name in self.acceptance_only:
            nominal = self.sources.get(f"w_{name}")
            for variation in both(name):
                ratio = np.asarray(_weight_input(events, self.sources[f"w_{variation.name}"]))
                if nominal is not None:
                    ratio = ratio / np.asarray(_weight_input(events, nominal))
                sums[variation.name] = float(np.sum(gen * ratio))
        return sums


def _weight_input(events: ak.Array, source: str | tuple[str, int]) -> ak.Array:
    """A weight branch, or one entry of a weight array (``LHEScaleWeight``, ``PSWeight``)."""
    if isinstance(source, str):
        return column(events, source)
    branch, index = source
    values = column(events, branch)
    too_short = ak.num(values) <= index
    if ak.any(too_short):
        raise AnalysisError(
            f"{events.metadata['filename']}: {branch} has fewer than {index + 1} entries in "
            f"some events; fix the index in config weights.variations"
        )
    return values[:, index]


def chunk_objects(
    events: ak.Array,
    branches: Mapping[str, Any],
    trigger_paths: Sequence[str],
    weights: WeightInputs,
    met_unclustered: bool,
) -> dict[str, Any]:
    """The objects of a chunk: collections, MET as x and y, trigger, weights, gen matching.

    The taus' ``decayMode`` is the branch ``branches.tau_decay_mode``. ``met_unclustered``: also
    read the unclustered-energy MET variation (simulation only).
    """
    simulation = weights.simulation
    met = events[branches["met"]]
    taus = events.Tau
    decay_mode = field(branches["tau_decay_mode"])
    if decay_mode != "decayMode":
        taus = ak.with_field(taus, taus[decay_mode], "decayMode")
    objects = {
        "keys": {key: events[key] for key in EVENT_KEYS},
        "muons": events.Muon,
        "taus": taus,
        "jets": events.Jet,
        "met_x": met.pt * np.cos(met.phi),
        "met_y": met.pt * np.sin(met.phi),
        "trigger": trigger(events, trigger_paths),
        "weight": weights.generator(events) if simulation else None,
        "weight_inputs": weights.columns(events),
        "genmatch": events.Tau[field(branches["tau_genmatch"])] if simulation else None,
    }
    if met_unclustered and simulation:
        objects["met_uncl"] = unclustered_met(events, branches["met_unclustered"], objects)
    return objects


def unclustered_met(
    events: ak.Array, spec: Mapping[str, Any], objects: Mapping[str, Any]
) -> dict[str, tuple[ak.Array, ak.Array]]:
    """MET (x, y) of the unclustered-energy variation, by direction (``up``, ``down``).

    ``spec`` is ``branches.met_unclustered``: ``form: delta`` names the x and y shifts of the up
    variation (down is minus them; NanoAOD v9 ``MET_MetUnclustEnUpDelta{X,Y}``), ``form:
    shifted`` the pT and phi of the varied MET (``PuppiMET_{pt,phi}Unclustered{Up,Down}``).
    """
    values = [column(events, branch) for branch in spec["branches"]]
    met_x, met_y = objects["met_x"], objects["met_y"]
    if spec["form"] == "delta":
        dx, dy = values
        return {
            direction: (met_x + sign * dx, met_y + sign * dy)
            for direction, sign in (("up", 1.0), ("down", -1.0))
        }
    pt_up, phi_up, pt_down, phi_down = values
    return {
        "up": (pt_up * np.cos(phi_up), pt_up * np.sin(phi_up)),
        "down": (pt_down * np.cos(phi_down), pt_down * np.sin(phi_down)),
    }


def trigger(events: ak.Array, paths: Sequence[str]) -> ak.Array:
    """OR of the trigger paths; every event passes if no path is configured."""
    fired = (
        ak.zeros_like(events.event, dtype=bool) if paths else ak.ones_like(events.event, dtype=bool)
    )
    for path in paths:
        fired = fired | column(events, path)
    return fired
