"""Jet energy resolution smearing, jet energy-scale uncertainty sources and the correctionlib jet
ID, from official-format JME files.

- ``variations.jer`` (``file``, ``scale_factor``, ``resolution``, ``systematics``): simulated jets
  are smeared by the hybrid method. A jet matched to a generator jet (within Delta R < 0.2 and
  |pT - pT_gen| < 3 sigma pT) is scaled, ``1 + (SF - 1)(pT - pT_gen)/pT``; any other jet gets
  ``1 + N(0, 1) sigma sqrt(max(SF^2 - 1, 0))``, with ``sigma`` the relative resolution. The
  normal number of a jet is a hash of (run, luminosityBlock, event, jet index), so reruns, other
  chunkings and other machines give identical jets. The nominal skims use the smeared jets (the
  change propagated to the MET); ``jer_up``/``jer_down`` redo the smearing with the scale factor
  varied, with the same normal numbers.
- ``variations.jes_sources`` (``file``, ``correction`` with ``{source}``, ``sources``): one
  shape variation ``jes_<source>_{up,down}`` per source, scaling every jet by ``1 +- delta``
  (inputs ``JetEta``, ``JetPt``) and propagating the change to the MET like ``jet_es``.
- ``selection.jet.id_correction`` (``file``, ``correction``): the jet ID evaluated from the jets'
  constituent fractions and multiplicities (NanoAOD v15 has no ``Jet_jetId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from analysis.core.errors import AnalysisError
from analysis.core.variations import Variation
from analysis.selection.corrections import SchemaCorrection
from analysis.selection.nanoaod import column
from analysis.selection.shifts import (
    MET_PROPAGATION_JET_PT,
    as_numpy,
    propagate_to_met,
    rescaled,
    scaled,
)

#: Inputs the JME corrections are given, per jet.
JET_QUANTITIES = ("JetEta", "JetPt", "Rho")
#: Generator-jet matching of the hybrid smearing: Delta R below half the jet radius (AK4).
MATCH_DR = 0.2
MATCH_SIGMAS = 3.0
#: Jet ID inputs: branch fields of the NanoAOD jets, and their sum ``multiplicity``.
JET_ID_FIELDS = ("eta", "chHEF", "neHEF", "chEmEF", "neEmEF", "muEF", "chMultiplicity",
                 "neMultiplicity")  # fmt: skip

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def jes_sources(variations: Mapping[str, Any]) -> list[str]:
    """The energy-scale uncertainty sources configured (``variations.jes_sources.sources``)."""
    spec = variations.get("jes_sources")
    return list(spec["sources"]) if spec else []


class JetEnergy:
    """The JER and JES corrections of a sample, loaded once.

    Args:
        variations: the config section ``variations`` (``jer``, ``jes_sources``).
        branches: the config section ``branches`` (``rho``).
        simulation: data are neither smeared nor varied.
    """

    def __init__(
        self, variations: Mapping[str, Any], branches: Mapping[str, Any], simulation: bool
    ) -> None:
        self.rho = branches.get("rho")
        self.jer = variations.get("jer") if simulation else None
        self.sources: dict[str, SchemaCorrection] = {}
        if self.jer:
            key = "variations.jer"
            self.scale_factor = SchemaCorrection(
                {**self.jer, "correction": self.jer["scale_factor"]}, key, JET_QUANTITIES
            )
            self.resolution = SchemaCorrection(
                {**self.jer, "correction": self.jer["resolution"]}, key, JET_QUANTITIES,
                systematic=False,
            )  # fmt: skip
        spec = variations.get("jes_sources") if simulation else None
        for source in jes_sources(variations) if spec else []:
            self.sources[source] = SchemaCorrection(
                {**spec, "correction": spec["correction"].format(source=source)},
                "variations.jes_sources", JET_QUANTITIES, systematic=False,
            )  # fmt: skip

    def smeared(self, events: ak.Array, nominal: dict[str, Any]) -> dict[str, Any]:
        """The nominal objects with smeared jets and MET, and the jet pT of ``jer_up/down``."""
        if not self.jer:
            return nominal
        jets = nominal["jets"]
        counts = ak.num(jets)
        flat = ak.flatten(jets)
        quantities = {
            "JetEta": as_numpy(flat.eta),
            "JetPt": as_numpy(flat.pt),
            "Rho": np.repeat(as_numpy(column(events, self.rho)), as_numpy(counts)),
        }
        sigma = self.resolution.evaluate(quantities)
        gen_pt = _matched_gen_pt(events, jets, sigma, counts)
        normal = jet_normals(nominal["keys"], counts)
        factors = {}
        for direction, syst in zip(("nominal", "up", "down"), self.jer["systematics"], strict=True):
            sf = self.scale_factor.evaluate(quantities, syst)
            factors[direction] = smearing_factor(quantities["JetPt"], gen_pt, sigma, sf, normal)
        propagated = jets.pt > MET_PROPAGATION_JET_PT
        changed, relative = rescaled(nominal, "jets", factors, propagated)
        return {**nominal, **changed, "jer_factor": relative}

    def shift(self, nominal: Mapping[str, Any], variation: Variation) -> dict[str, Any]:
        """The changed entries of a ``jer`` or ``jes_<source>`` variation."""
        jets = nominal["jets"]
        if variation.source == "jer":
            factor = nominal["jer_factor"][variation.direction]
        else:
            source = variation.source.removeprefix("jes_")
            correction = self.sources.get(source)
            if correction is None:
                raise ValueError(f"unknown variation {variation.name}")
            flat = ak.flatten(jets)
            delta = correction.evaluate({"JetEta": as_numpy(flat.eta), "JetPt": as_numpy(flat.pt)})
            sign = 1.0 if variation.direction == "up" else -1.0
            factor = ak.unflatten(1.0 + sign * delta, ak.num(jets))
        propagated = jets.pt > MET_PROPAGATION_JET_PT
        met_x, met_y = propagate_to_met(nominal, jets[propagated], factor[propagated])
        return {"jets": scaled(jets, factor), "met_x": met_x, "met_y": met_y}


def smearing_factor(
    pt: np.ndarray, gen_pt: np.ndarray, sigma: np.ndarray, sf: np.ndarray, normal: np.ndarray
) -> np.ndarray:
    """The hybrid smearing factor of each jet (``gen_pt`` < 0: no matched generator jet)."""
    matched = gen_pt >= 0
    scaling = 1.0 + (sf - 1.0) * np.divide(pt - gen_pt, pt, out=np.zeros_like(pt), where=pt > 0)
    stochastic = 1.0 + normal * sigma * np.sqrt(np.maximum(sf * sf - 1.0, 0.0))
    return np.maximum(np.where(matched, scaling, stochastic), 0.0)


def _matched_gen_pt(
    events: ak.Array, jets: ak.Array, sigma: np.ndarray, counts: ak.Array
) -> np.ndarray:
    """pT of each jet's generator jet when it passes the matching criteria, else -1."""
    index = jets.genJetIdx
    genjets = events.GenJet
    valid = (index >= 0) & (index < ak.num(genjets))
    gen = genjets[ak.mask(index, valid)]
    close = ak.fill_none(jets.delta_r(gen) < MATCH_DR, False)
    pt = as_numpy(ak.flatten(jets.pt)).astype(np.float64)
    gen_pt = as_numpy(ak.flatten(ak.fill_none(gen.pt, -1.0))).astype(np.float64)
    matched = as_numpy(ak.flatten(close)) & (np.abs(pt - gen_pt) < MATCH_SIGMAS * sigma * pt)
    return np.where(matched & (gen_pt >= 0), gen_pt, -1.0)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 mixing function (a fixed bijection of 64-bit integers)."""
    z = (values + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


def jet_normals(keys: Mapping[str, ak.Array], counts: ak.Array) -> np.ndarray:
    """One standard normal number per jet from (run, lumi, event, jet index) alone."""
    counts = as_numpy(counts)
    repeat = {name: np.repeat(as_numpy(keys[name]).astype(np.uint64), counts) for name in keys}
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    index = (np.arange(counts.sum()) - starts).astype(np.uint64)
    with np.errstate(over="ignore"):
        state = _splitmix64(repeat["event"])
        state = _splitmix64(state ^ repeat["luminosityBlock"])
        state = _splitmix64(state ^ repeat["run"])
        first = _splitmix64(state ^ index)
        second = _splitmix64(first)
    # uniforms in (0, 1] from the top 53 bits, then Box-Muller
    u1 = ((first >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53
    u2 = (second >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def jet_id_correction(jet_cuts: Mapping[str, Any]) -> SchemaCorrection | None:
    """The correctionlib jet ID of ``selection.jet.id_correction``, or None."""
    spec = jet_cuts.get("id_correction")
    if not spec:
        return None
    provides = (*JET_ID_FIELDS, "multiplicity")
    return SchemaCorrection(spec, "selection.jet.id_correction", provides, systematic=False)


def with_jet_id(jets: ak.Array, correction: SchemaCorrection) -> ak.Array:
    """The jets with a boolean ``passJetId`` field from the correctionlib jet ID."""
    flat = ak.flatten(jets)
    try:
        quantities = {name: as_numpy(flat[name]) for name in JET_ID_FIELDS}
    except Exception as err:  # awkward raises FieldNotFoundError (not exported) for a field
        raise AnalysisError(
            f"jet ID correction: the jets lack a field ({err}); selection.jet.id_correction needs "
            f"Jet_{{{','.join(JET_ID_FIELDS)}}}"
        ) from None
    quantities["multiplicity"] = quantities["chMultiplicity"] + quantities["neMultiplicity"]
    passed = correction.evaluate(quantities) > 0.5
    return ak.with_field(jets, ak.unflatten(passed, ak.num(jets)), "passJetId")
