"""The tau_h energy scale from a TAU POG correction file (``variations.tau_es_correction``).

The TAU POG publishes the energy scale of simulated tau_h as the correction ``tau_energy_scale``
(inputs ``pt``, ``eta``, ``dm``, ``genmatch``, the DeepTau version ``id``, in Run 3 also the
working points ``wp`` and ``wp_VSe``, and ``syst``: ``nom``, ``up``, ``down``): a factor for the
tau_h's energy by its generator match (genuine tau_h, electrons and muons faking one; 1 for jets).
In simulation the nominal objects carry the ``nom`` factor, with the change of the tau_h's pT
propagated to the MET; the ``tau_es_up``/``tau_es_down`` variations carry the ``up``/``down``
factors instead (the ratio to ``nom`` applied to the corrected tau_h). Data are not corrected.
Without the key, ``variations.tau_es`` (relative uncertainties per decay mode, the toy's) gives
the variations (:mod:`analysis.selection.shifts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak

from analysis.core.variations import Variation
from analysis.selection.corrections import SchemaCorrection
from analysis.selection.shifts import as_numpy, propagate_to_met, rescaled, scaled

#: The per-tau_h quantities the analysis gives the correction, by the TAU POG's input names.
TAU_QUANTITIES = ("pt", "eta", "dm", "genmatch")
#: The config key of the correction.
KEY = "variations.tau_es_correction"


class TauEnergy:
    """The TAU POG energy scale of one sample's tau_h (nothing for data or without the key).

    Args:
        variations: the config section ``variations``.
        simulation: whether the sample is simulation.
    """

    def __init__(self, variations: Mapping[str, Any], simulation: bool) -> None:
        spec = variations.get("tau_es_correction") if simulation else None
        self.correction = SchemaCorrection(spec, KEY, TAU_QUANTITIES) if spec else None
        directions = ("nominal", "up", "down")
        self.systematics = dict(zip(directions, spec["systematics"], strict=True)) if spec else {}

    def corrected(self, nominal: dict[str, Any]) -> dict[str, Any]:
        """The nominal objects with the tau_h at the ``nom`` energy scale and the MET following,
        and the factors of ``tau_es_up/down`` relative to it (``tau_es_factor``)."""
        if self.correction is None:
            return nominal
        flat = ak.flatten(nominal["taus"])
        quantities = {
            "pt": as_numpy(flat.pt),
            "eta": as_numpy(flat.eta),
            "dm": as_numpy(flat.decayMode),
            "genmatch": as_numpy(ak.flatten(nominal["genmatch"])),
        }
        factors = {
            direction: self.correction.evaluate(quantities, systematic)
            for direction, systematic in self.systematics.items()
        }
        changed, relative = rescaled(nominal, "taus", factors)
        return {**nominal, **changed, "tau_es_factor": relative}

    def shift(self, nominal: Mapping[str, Any], variation: Variation) -> dict[str, Any]:
        """The changed entries of ``tau_es_up``/``tau_es_down``, from corrected nominal objects."""
        taus = nominal["taus"]
        factor = nominal["tau_es_factor"][variation.direction]
        met_x, met_y = propagate_to_met(nominal, taus, factor)
        return {"taus": scaled(taus, factor), "met_x": met_x, "met_y": met_y}
