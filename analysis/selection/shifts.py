"""Object-level shape variations: tau_h and jet energy scales and unclustered MET.

Each variation rescales the objects of one chunk (``objects``: the per-event entries the
processor builds, with MET as ``met_x``/``met_y``) and propagates the change to the MET, so that
the selection can rerun on the shifted objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import awkward as ak
import numpy as np

from analysis.core.variations import NOMINAL, Variation
from analysis.selection.nanoaod import GENUINE_TAU

#: Jets above this pT enter the type-1 MET propagation of the jet energy scale.
MET_PROPAGATION_JET_PT = 15.0

#: A shift: (nominal objects, sign of the direction, the ``variations`` config) -> changed entries.
Shift = Callable[[Mapping[str, Any], float, Mapping[str, Any]], dict[str, Any]]


def shifted(
    nominal: Mapping[str, Any],
    name: str,
    uncertainties: Mapping[str, Any],
    jet_energy: Any = None,
    tau_energy: Any = None,
) -> Mapping[str, Any]:
    """The objects of variation ``name`` (``nominal`` itself for the nominal).

    ``jet_energy`` (an :class:`analysis.selection.jetenergy.JetEnergy`) shifts the ``jer`` and
    ``jes_<source>`` variations of the official-format JME corrections, ``tau_energy`` (an
    :class:`analysis.selection.tauenergy.TauEnergy`) the ``tau_es`` variation of a TAU POG file.
    """
    variation = Variation.parse(name)
    if variation.is_nominal and variation.source == NOMINAL:
        return nominal
    if "tau_es_factor" in nominal and variation.source == "tau_es" and variation.direction:
        return {**nominal, **tau_energy.shift(nominal, variation)}
    if (
        jet_energy is not None
        and variation.direction
        and (variation.source == "jer" or variation.source.startswith("jes_"))
    ):
        return {**nominal, **jet_energy.shift(nominal, variation)}
    shift = SHIFTS.get(variation.source) if variation.direction else None
    if shift is None:
        raise ValueError(f"unknown variation {name}")
    sign = 1.0 if variation.direction == "up" else -1.0
    return {**nominal, **shift(nominal, sign, uncertainties)}


def _tau_energy_scale(
    nominal: Mapping[str, Any], sign: float, uncertainties: Mapping[str, Any]
) -> dict[str, Any]:
    taus = nominal["taus"]
    factor = 1.0 + sign * tau_es_uncertainty(taus, nominal["genmatch"], uncertainties["tau_es"])
    met_x, met_y = propagate_to_met(nominal, taus, factor)
    return {"taus": scaled(taus, factor), "met_x": met_x, "met_y": met_y}


def _jet_energy_scale(
    nominal: Mapping[str, Any], sign: float, uncertainties: Mapping[str, Any]
) -> dict[str, Any]:
    jets = nominal["jets"]
    factor = 1.0 + sign * uncertainties["jet_es"]
    propagated = jets[jets.pt > MET_PROPAGATION_JET_PT]
    met_x, met_y = propagate_to_met(nominal, propagated, factor)
    return {"jets": scaled(jets, factor), "met_x": met_x, "met_y": met_y}


def _unclustered_met(
    nominal: Mapping[str, Any], sign: float, uncertainties: Mapping[str, Any]
) -> dict[str, Any]:
    met_x, met_y = nominal["met_uncl"]["up" if sign > 0 else "down"]
    return {"met_x": met_x, "met_y": met_y}


#: The shift of each variation source.
SHIFTS: dict[str, Shift] = {
    "tau_es": _tau_energy_scale,
    "jet_es": _jet_energy_scale,
    "met_uncl": _unclustered_met,
}


def tau_es_uncertainty(
    taus: ak.Array, genmatch: ak.Array, by_decay_mode: Mapping[str, float]
) -> ak.Array:
    """Relative energy-scale uncertainty per tau_h: by decay mode, genuine tau_h only."""
    sigma = ak.zeros_like(taus.pt)
    for decay_mode, value in by_decay_mode.items():
        sigma = ak.where(taus.decayMode == int(decay_mode), value, sigma)
    return ak.where(genmatch == GENUINE_TAU, sigma, 0.0)


def scaled(objects: ak.Array, factor: ak.Array | float) -> ak.Array:
    """Objects with pt and mass multiplied by ``factor`` (an energy-scale shift)."""
    shifted_objects = ak.with_field(objects, objects.pt * factor, "pt")
    return ak.with_field(shifted_objects, objects.mass * factor, "mass")


def propagate_to_met(
    nominal: Mapping[str, Any], objects: ak.Array, factor: ak.Array | float
) -> tuple[ak.Array, ak.Array]:
    """MET after rescaling ``objects``: the MET vector absorbs minus the change of their pT sum."""
    delta_pt = objects.pt * (factor - 1.0)
    dx = ak.sum(delta_pt * np.cos(objects.phi), axis=1)
    dy = ak.sum(delta_pt * np.sin(objects.phi), axis=1)
    return nominal["met_x"] - dx, nominal["met_y"] - dy


def rescaled(
    nominal: Mapping[str, Any],
    key: str,
    factors: Mapping[str, np.ndarray],
    propagated: ak.Array | None = None,
) -> tuple[dict[str, Any], dict[str, ak.Array]]:
    """The objects ``nominal[key]`` scaled by the flat per-object ``factors["nominal"]`` with the
    MET following (of the ``propagated`` objects only, when given), and the ``up``/``down``
    factors relative to the nominal one (what their variations apply to the scaled objects)."""
    objects = nominal[key]
    counts = ak.num(objects)
    factor = ak.unflatten(factors["nominal"], counts)
    moved = slice(None) if propagated is None else propagated
    met_x, met_y = propagate_to_met(nominal, objects[moved], factor[moved])
    relative = {
        direction: ak.unflatten(relative_factor(factors[direction], factors["nominal"]), counts)
        for direction in ("up", "down")
    }
    return {key: scaled(objects, factor), "met_x": met_x, "met_y": met_y}, relative


def relative_factor(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1 where the denominator is 0 (an object scaled to pT 0 stays
    0): a variation's factor relative to the nominal one."""
    return np.divide(numerator, denominator, out=np.ones_like(numerator), where=denominator > 0)


def as_numpy(values: Any) -> np.ndarray:
    """A flat awkward array as numpy (what correctionlib evaluates)."""
    return np.asarray(ak.to_numpy(values))
