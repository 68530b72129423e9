"""Per-event scale factors from official-format corrections (``weights.corrections``).

For simulation the preselection evaluates, on the selected objects of every skim (so a shifted
tau_h gets the scale factor of its shifted pT), each configured correction with its nominal, up
and down systematic, and writes them as the skim columns ``w_<name>``, ``w_<name>_up`` and
``w_<name>_down``. The friend trees then multiply the nominal into the event weight and carry
``weight_<name>_up/down`` like any other weight variation (:mod:`analysis.selection.friends`).

- ``pileup``: from ``Pileup_nTrueInt`` (input ``NumTrueInteractions``);
- ``muon_id``, ``muon_iso``, ``muon_trigger``: of the selected muon (``abseta``/``eta``, ``pt``);
- ``tau_id``: of the selected tau_h (``pt``, ``dm``, ``genmatch``, ``eta``/``abseta``); the file
  returns 1 for tau_h that are not genuine;
- ``btag``: the fixed working-point event weight ("method 1a" of the BTV POG) over the b-tagging
  candidate jets (clean jets inside the ``selection.bjet`` acceptance)::

      w = prod_tagged SF_i  *  prod_untagged (1 - SF_i eff_i) / (1 - eff_i)

  with the scale factor of ``correction`` (the jets of ``heavy_flavours``, b and c by default;
  a c jet outside them, as with the b-jet-only Run-3 payloads, gets SF 1) or
  ``light_correction`` (light jets) and the efficiency in simulation from this analysis's own map
  (``efficiency``). Up/down vary all scale factors together; with ``sources`` (the BTV POG's
  split uncertainty: systematics ``up_<source>``/``down_<source>``) each source varies the b/c
  scale factor alone, as ``btag_<source>``, and ``btag_light`` the light-jet one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from analysis.core.config import BTAG_LIGHT
from analysis.core.errors import AnalysisError
from analysis.selection.corrections import SchemaCorrection

#: The object each weight correction applies to, and the quantities it is given.
KINDS = {
    "pileup": ("event", ("NumTrueInteractions",)),
    "muon_id": ("muon", ("abseta", "eta", "pt")),
    "muon_iso": ("muon", ("abseta", "eta", "pt")),
    "muon_trigger": ("muon", ("abseta", "eta", "pt")),
    "tau_id": ("tau", ("pt", "dm", "genmatch", "eta", "abseta")),
    "btag": ("jets", ("flavor", "abseta", "pt")),
}
#: Hadron flavour of light jets (evaluated with ``light_correction``), and the flavours the b/c
#: ``correction`` covers unless ``heavy_flavours`` says otherwise.
LIGHT, HEAVY_FLAVOURS = 0, (4, 5)


def column_systematics(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Skim column -> the systematic it is evaluated with, of one weight correction: ``w_<name>``
    and ``w_<variation>_{up,down}`` of each of its variations
    (:func:`analysis.core.config.correction_variations`). The b-tagging weight's are pairs
    (b/c scale factor, light scale factor)."""
    central, up, down = spec.get("systematics") or ["nominal", "up", "down"]
    if name != "btag":
        return {f"w_{name}": central, f"w_{name}_up": up, f"w_{name}_down": down}
    columns = {"w_btag": (central, central)}
    sources = spec.get("sources")
    if not sources:
        return {**columns, "w_btag_up": (up, up), "w_btag_down": (down, down)}
    for source in sources:
        columns[f"w_btag_{source}_up"] = (f"up_{source}", central)
        columns[f"w_btag_{source}_down"] = (f"down_{source}", central)
    columns[f"w_{BTAG_LIGHT}_up"] = (central, up)
    columns[f"w_{BTAG_LIGHT}_down"] = (central, down)
    return columns


def active_corrections(weights: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The configured weight corrections (``weights.corrections``, null entries off)."""
    return {name: spec for name, spec in (weights.get("corrections") or {}).items() if spec}


class EventCorrections:
    """The weight corrections of a sample, loaded once (errors at start, not in a chunk).

    Args:
        weights: the config section ``weights``.
        simulation: data get no corrections.
    """

    def __init__(self, weights: Mapping[str, Any], simulation: bool) -> None:
        self.specs = active_corrections(weights) if simulation else {}
        self.corrections: dict[str, SchemaCorrection] = {}
        for name, spec in self.specs.items():
            key = f"weights.corrections.{name}"
            if name not in KINDS:
                raise AnalysisError(f"config: key '{key}': unknown; use one of {sorted(KINDS)}")
            if name == "btag":
                self._load_btag(spec, key)
            else:
                self.corrections[name] = SchemaCorrection(spec, key, KINDS[name][1])

    def _load_btag(self, spec: Mapping[str, Any], key: str) -> None:
        constants = {**(spec.get("constants") or {}), "working_point": spec["working_point"]}
        provides = KINDS["btag"][1]
        self.corrections["btag"] = SchemaCorrection({**spec, "constants": constants}, key, provides)
        light = {**spec, "correction": spec["light_correction"], "constants": constants}
        self.corrections["btag_light"] = SchemaCorrection(light, key, provides)
        efficiency = {**spec["efficiency"], "constants": {"working_point": spec["working_point"]}}
        self.corrections["btag_efficiency"] = SchemaCorrection(
            efficiency, f"{key}.efficiency", provides, systematic=False
        )

    @property
    def names(self) -> list[str]:
        """The weight sources, in config order."""
        return list(self.specs)

    def columns(self, selected: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``w_<name>``, ``w_<name>_up``, ``w_<name>_down`` of the selected events.

        ``selected``: per-event entries of the selected events (``pileup``, ``muon``, ``tau``,
        ``tau_genmatch``, ``btag_jets`` with ``hadronFlavour`` and ``btagged``).
        """
        columns = {}
        for name in self.names:
            for column, syst in column_systematics(name, self.specs[name]).items():
                columns[column] = self._evaluate(name, selected, syst)
        return columns

    def _evaluate(self, name: str, selected: Mapping[str, Any], syst: Any) -> np.ndarray:
        if name == "btag":
            return self._btag_weight(selected["btag_jets"], *syst)
        quantities = _quantities(KINDS[name][0], selected)
        return self.corrections[name].evaluate(quantities, syst)

    def _btag_weight(self, jets: ak.Array, heavy_syst: str, light_syst: str) -> np.ndarray:
        counts = ak.num(jets)
        flat = ak.flatten(jets)
        flavour = np.asarray(ak.to_numpy(flat.hadronFlavour), dtype=np.int32)
        quantities = {
            "flavor": flavour,
            "abseta": np.abs(np.asarray(ak.to_numpy(flat.eta), dtype=np.float64)),
            "pt": np.asarray(ak.to_numpy(flat.pt), dtype=np.float64),
        }
        heavy = np.isin(flavour, self.specs["btag"].get("heavy_flavours") or HEAVY_FLAVOURS)
        sf = np.ones(len(flavour))  # a c jet the b/c correction does not cover: SF 1
        for mask, correction, syst in (
            (flavour == LIGHT, "btag_light", light_syst),
            (heavy, "btag", heavy_syst),
        ):
            if mask.any():
                subset = {key: values[mask] for key, values in quantities.items()}
                sf[mask] = self.corrections[correction].evaluate(subset, syst)
        efficiency = self.corrections["btag_efficiency"].evaluate(quantities)
        tagged = np.asarray(ak.to_numpy(flat.btagged), dtype=bool)
        factor = np.where(tagged, sf, _untagged_factor(sf, efficiency))
        return np.asarray(ak.to_numpy(ak.prod(ak.unflatten(factor, counts), axis=1)))


def _untagged_factor(sf: np.ndarray, efficiency: np.ndarray) -> np.ndarray:
    """(1 - SF eff) / (1 - eff); 1 where the efficiency is 1 (no untagged jets are expected)."""
    return np.divide(
        1.0 - sf * efficiency,
        1.0 - efficiency,
        out=np.ones_like(sf),
        where=efficiency < 1.0,
    )


def _quantities(kind: str, selected: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The named quantities of the object of ``kind`` in the selected events."""
    if kind == "event":
        return {"NumTrueInteractions": _np(selected["pileup"])}
    candidate = selected[kind]
    eta = _np(candidate.eta)
    quantities = {"pt": _np(candidate.pt), "eta": eta, "abseta": np.abs(eta)}
    if kind == "tau":
        quantities["dm"] = _np(candidate.decayMode)
        quantities["genmatch"] = _np(selected["tau_genmatch"])
    return quantities


def _np(values: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(values))
