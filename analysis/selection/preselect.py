"""Preselection: a coffea processor over NanoAOD selecting mu+tau_h pairs.

For every chunk of events the processor builds the physics objects once and then, for the nominal
objects and every object-level shape variation (tau_h and jet energy scale, unclustered MET),
re-runs the selection and computes the analysis features: one read, several skims. Chunks run on a
dask cluster (local by default, an existing scheduler or Slurm through dask-jobqueue when
configured); each chunk writes its rows to a scratch file and the driver concatenates them in
(file, entry) order, so memory is bounded by the chunk size and the output order is reproducible.

Outputs per sample and variation: ``<variation>.root`` (TTree ``Events``: event keys, features,
per-event weight inputs) and ``<variation>.cutflow.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from analysis.core.config import (
    NOMINAL,
    active_weight_variations,
    is_simulation,
    sample_variations,
    weight_columns,
)
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import EVENT_KEYS, write_json

log = logging.getLogger(__name__)

#: Value of a feature that does not exist in an event (e.g. the second jet of a 1-jet event).
MISSING = -10.0

#: Feature columns written to every skim (float32, NanoAOD precision).
FEATURES = (
    "pt_1", "eta_1", "phi_1", "iso_1",
    "pt_2", "eta_2", "phi_2", "m_2",
    "m_vis", "pt_vis", "m_coll", "pt_tt", "dR_ll",
    "met", "met_phi", "mt_1", "mt_2", "mt_tot",
    "njets", "nbtag", "jpt_1", "jeta_1", "jpt_2", "jeta_2", "mjj", "deta_jj",
)  # fmt: skip

#: Integer columns: tau decay mode, gen match (-1 in data), opposite-sign flag.
INT_COLUMNS = ("dm_2", "gen_match_2", "is_os")

#: Ordered selection steps as they appear in the cutflow.
CUTS = ("all", "trigger", "muon", "extra_muon_veto", "tau_pair", "bjets")

#: Jets above this pT enter the type-1 MET propagation of the jet energy scale.
MET_PROPAGATION_JET_PT = 15.0


def column(events: ak.Array, branch: str) -> ak.Array:
    """The NanoEvents column of a flat NanoAOD branch: ``HLT_IsoMu24`` is ``events.HLT.IsoMu24``."""
    if branch in events.fields:
        return events[branch]
    collection, name = branch.split("_", 1)
    return events[collection][name]


def field(branch: str) -> str:
    """The NanoEvents field of a NanoAOD branch name, e.g. ``Tau_idDeepTau2017v2p1VSjet``."""
    return branch.split("_", 1)[1]


def required_branches(settings: Mapping[str, Any], simulation: bool) -> dict[str, str]:
    """NanoAOD branches the preselection reads, each mapped to what needs it (for messages)."""
    branches, selection = settings["branches"], settings["selection"]
    met = branches["met"]
    needed = {key: "event keys" for key in EVENT_KEYS}
    for name in ("pt", "eta", "phi", "mass", "charge"):
        needed[f"Muon_{name}"] = "muon selection"
        needed[f"Tau_{name}"] = "tau selection"
    for name in ("pt", "eta", "phi", "mass", "jetId"):
        needed[f"Jet_{name}"] = "jet selection"
    needed["Tau_decayMode"] = "tau selection"
    for key in ("muon_id", "muon_iso", "tau_id", "tau_antimu", "btag"):
        needed[branches[key]] = f"config key branches.{key}"
    needed[f"{met}_pt"] = needed[f"{met}_phi"] = "config key branches.met"
    if settings["variations"].get("met_unclustered"):
        for axis in "XY":
            needed[f"{met}_MetUnclustEnUpDelta{axis}"] = (
                "variations.met_unclustered (set it to false if your NanoAOD lacks it)"
            )
    for path in selection["trigger"]["paths"]:
        needed[path] = "config key selection.trigger.paths"
    if simulation:
        needed[branches["tau_genmatch"]] = "config key branches.tau_genmatch"
        for column, source in weight_columns(settings["weights"]).items():
            branch = source[0] if isinstance(source, tuple) else source
            needed[branch] = f"weights config (skim column {column})"
    return needed


def check_inputs(
    files: Sequence[str], treename: str, needed: Mapping[str, str], sample: str
) -> None:
    """Fail early, in one line, if a file is unreadable or lacks a needed branch."""
    for path in files:
        try:
            with uproot.open(path) as fin:
                keys = set(fin[treename].keys())
        except FileNotFoundError:
            raise AnalysisError(
                f"sample '{sample}': input file {path} not found; fix its path in the samples file"
            ) from None
        except KeyError:
            raise AnalysisError(
                f"sample '{sample}': {path} has no tree '{treename}'; set `treename` in the "
                "samples file"
            ) from None
        except Exception as err:  # uproot raises several types for corrupt files
            raise AnalysisError(f"sample '{sample}': cannot read {path} ({err})") from None
        for branch, reason in needed.items():
            if branch not in keys:
                close = difflib.get_close_matches(branch, keys, n=3, cutoff=0.6)
                hint = f" (this file has {', '.join(close)})" if close else ""
                raise AnalysisError(
                    f"sample '{sample}': {path} has no branch '{branch}', "
                    f"needed by {reason}{hint}; "
                    "point the config at a branch this file has or drop the feature"
                )


def generator_sumw(files: Sequence[str], names: Sequence[str]) -> float | None:
    """Sum of generator weights from the ``Runs`` trees, or None if a file lacks them.

    The first of ``names`` present is used (``genEventSumw`` since NanoAOD v7, ``genEventSumw_``
    before).
    """
    total = 0.0
    for path in files:
        with uproot.open(path) as fin:
            if "Runs" not in fin:
                return None
            runs = fin["Runs"]
            name = next((n for n in names if n in runs.keys()), None)
            if name is None:
                return None
            total += float(np.sum(runs[name].array(library="np")))
    return total


class SkimProcessor(processor.ProcessorABC):
    """Selects mu+tau_h events, computes features for every shape variation, writes chunk rows.

    Args:
        settings: the config sections ``branches``, ``selection``, ``variations``, ``weights``.
        sample: the sample's entry of the samples file.
        variations: the skims to produce (nominal first).
        scratch: directory for per-chunk rows, shared with the dask workers.
        file_index: position of each input file, so rows are ordered by (file, entry).
    """

    def __init__(
        self,
        settings: Mapping[str, Any],
        sample: Mapping[str, Any],
        variations: Sequence[str],
        scratch: str,
        file_index: Mapping[str, int],
    ) -> None:
        self.branches = settings["branches"]
        self.selection = settings["selection"]
        self.uncertainties = settings["variations"]
        self.weight_sources = weight_columns(settings["weights"]) if is_simulation(sample) else {}
        self.acceptance_only = {
            name
            for name, spec in active_weight_variations(settings["weights"]).items()
            if spec.get("acceptance_only")
        }
        self.simulation = is_simulation(sample)
        self.variations = list(variations)
        self.scratch = scratch
        self.file_index = dict(file_index)

    def process(self, events: ak.Array) -> dict[str, Any]:
        """Run all variations on one chunk; return cutflows, weight sums and chunk file names."""
        meta = events.metadata
        chunk = f"{self.file_index[meta['filename']]:05d}_{meta['entrystart']:012d}.npz"
        nominal = self._objects(events)
        output: dict[str, Any] = {
            "cutflow": {},
            "chunks": [chunk],
            "sumw": self._weight_sums(events),
        }
        for variation in self.variations:
            objects = self._shifted(nominal, variation)
            columns, cutflow = self._select(objects)
            np.savez(os.path.join(self.scratch, variation, chunk), **columns)
            output["cutflow"][variation] = cutflow
        return output

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Nothing to merge beyond coffea's accumulation."""
        return accumulator

    # -- objects and variations ---------------------------------------------------------------

    def _objects(self, events: ak.Array) -> dict[str, Any]:
        met = events[self.branches["met"]]
        objects = {
            "keys": {key: events[key] for key in EVENT_KEYS},
            "muons": events.Muon,
            "taus": events.Tau,
            "jets": events.Jet,
            "met_x": met.pt * np.cos(met.phi),
            "met_y": met.pt * np.sin(met.phi),
            "trigger": self._trigger(events),
            "weight": column(events, self.branches_generator()) if self.simulation else None,
            "weight_inputs": {
                col: self._weight_input(events, src) for col, src in self.weight_sources.items()
            },
            "genmatch": (
                events.Tau[field(self.branches["tau_genmatch"])] if self.simulation else None
            ),
        }
        if self.uncertainties.get("met_unclustered") and self.simulation:
            objects["met_uncl"] = (met.MetUnclustEnUpDeltaX, met.MetUnclustEnUpDeltaY)
        return objects

    def branches_generator(self) -> str:
        """The generator-weight branch (from ``weights.generator``)."""
        return self.weight_sources["w_gen"]

    def _trigger(self, events: ak.Array) -> ak.Array:
        paths = self.selection["trigger"]["paths"]
        fired = (
            ak.zeros_like(events.event, dtype=bool)
            if paths
            else ak.ones_like(events.event, dtype=bool)
        )
        for path in paths:
            fired = fired | column(events, path)
        return fired

    @staticmethod
    def _weight_input(events: ak.Array, source: str | tuple[str, int]) -> ak.Array:
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

    def _weight_sums(self, events: ak.Array) -> dict[str, float]:
        """Sums over all processed events of the generator weight and its acceptance variations."""
        if not self.simulation:
            return {"events": float(len(events))}
        gen = np.asarray(column(events, self.branches_generator()), dtype=np.float64)
        sums = {"events": float(len(events)), "genWeight": float(gen.sum())}
        for name in self.acceptance_only:
            nominal = self.weight_sources.get(f"w_{name}")
            for direction in ("up", "down"):
                ratio = np.asarray(
                    self._weight_input(events, self.weight_sources[f"w_{name}_{direction}"])
                )
                if nominal is not None:
                    ratio = ratio / np.asarray(self._weight_input(events, nominal))
                sums[f"{name}_{direction}"] = float(np.sum(gen * ratio))
        return sums

    def _shifted(self, nominal: dict[str, Any], variation: str) -> dict[str, Any]:
        if variation == NOMINAL:
            return nominal
        source, direction = variation.rsplit("_", 1)
        sign = 1.0 if direction == "up" else -1.0
        objects = dict(nominal)
        if source == "tau_es":
            factor = 1.0 + sign * self._tau_es_uncertainty(nominal["taus"], nominal["genmatch"])
            objects["taus"] = _scaled(nominal["taus"], factor)
            objects["met_x"], objects["met_y"] = _propagate_to_met(nominal, nominal["taus"], factor)
        elif source == "jet_es":
            factor = 1.0 + sign * self.uncertainties["jet_es"]
            objects["jets"] = _scaled(nominal["jets"], factor)
            propagated = nominal["jets"][nominal["jets"].pt > MET_PROPAGATION_JET_PT]
            objects["met_x"], objects["met_y"] = _propagate_to_met(nominal, propagated, factor)
        elif source == "met_uncl":
            dx, dy = nominal["met_uncl"]
            objects["met_x"] = nominal["met_x"] + sign * dx
            objects["met_y"] = nominal["met_y"] + sign * dy
        else:
            raise ValueError(f"unknown variation {variation}")
        return objects

    def _tau_es_uncertainty(self, taus: ak.Array, genmatch: ak.Array) -> ak.Array:
        """Relative energy-scale uncertainty per tau_h: by decay mode, genuine tau_h only."""
        sigma = ak.zeros_like(taus.pt)
        for decay_mode, value in self.uncertainties["tau_es"].items():
            sigma = ak.where(taus.decayMode == int(decay_mode), value, sigma)
        return ak.where(genmatch == 5, sigma, 0.0)

    # -- selection and features ---------------------------------------------------------------

    def _select(self, objects: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Apply the event selection step by step, recording the cutflow; return the skim rows."""
        cutflow: dict[str, Any] = {}

        def apply(name: str, mask: ak.Array | None) -> None:
            nonlocal objects
            if mask is not None:
                objects = _take(objects, mask)
            weight = objects["weight"]
            events = float(len(objects["met_x"]))
            cutflow[name] = {
                "events": events,
                "weighted": float(ak.sum(weight)) if weight is not None else events,
            }

        apply("all", None)
        apply("trigger", objects["trigger"])
        apply("muon", ak.any(self._good_muons(objects["muons"]), axis=1))
        muons = objects["muons"]
        apply(
            "extra_muon_veto",
            ak.sum(self._good_muons(muons) | self._loose_muons(muons), axis=1) <= 1,
        )
        # every event now has exactly one good muon; pair it with the leading separated tau_h
        muon_index = _leading_index(objects["muons"], self._good_muons(objects["muons"]))
        good_taus = self._good_taus(objects["taus"], objects["muons"][muon_index][:, 0])
        objects["muon"] = objects["muons"][muon_index]
        objects["tau"] = objects["taus"][_leading_index(objects["taus"], good_taus)]
        objects["tau_genmatch"] = (
            objects["genmatch"][_leading_index(objects["taus"], good_taus)]
            if self.simulation
            else None
        )
        apply("tau_pair", ak.any(good_taus, axis=1))
        muon, tau = objects["muon"][:, 0], objects["tau"][:, 0]
        objects["jets"], objects["bjets"] = self._clean_jets(objects["jets"], muon, tau)
        max_bjets = self.selection["max_bjets"]
        apply("bjets", None if max_bjets is None else ak.num(objects["bjets"]) <= max_bjets)
        return self._columns(objects), cutflow

    def _good_muons(self, muons: ak.Array) -> ak.Array:
        cuts = self.selection
        return (
            (muons.pt > max(cuts["muon"]["pt"], cuts["trigger"]["muon_pt"]))
            & (abs(muons.eta) < cuts["muon"]["eta"])
            & muons[field(self.branches["muon_id"])]
            & (muons[field(self.branches["muon_iso"])] < cuts["muon"]["iso"])
        )

    def _loose_muons(self, muons: ak.Array) -> ak.Array:
        veto = self.selection["extra_muon_veto"]
        return (
            (muons.pt > veto["pt"])
            & (abs(muons.eta) < veto["eta"])
            & (muons[field(self.branches["muon_iso"])] < veto["iso"])
        )

    def _good_taus(self, taus: ak.Array, muon: ak.Array) -> ak.Array:
        cuts = self.selection["tau"]
        return (
            (taus.pt > cuts["pt"])
            & (abs(taus.eta) < cuts["eta"])
            & _isin(taus.decayMode, cuts["decay_modes"])
            & (taus[field(self.branches["tau_id"])] >= cuts["id_min"])
            & (taus[field(self.branches["tau_antimu"])] >= cuts["antimu_min"])
            & (taus.delta_r(muon) > self.selection["pair"]["min_dr"])
        )

    def _clean_jets(
        self, jets: ak.Array, muon: ak.Array, tau: ak.Array
    ) -> tuple[ak.Array, ak.Array]:
        """Jets and b jets passing ID and kinematics, away from the selected muon and tau_h."""
        jet_cut, bjet_cut = self.selection["jet"], self.selection["bjet"]
        clean = (
            (jets.jetId >= jet_cut["id_min"])
            & (jets.delta_r(muon) > jet_cut["min_dr"])
            & (jets.delta_r(tau) > jet_cut["min_dr"])
        )
        good = clean & (jets.pt > jet_cut["pt"]) & (abs(jets.eta) < jet_cut["eta"])
        btagged = (
            clean
            & (jets.pt > bjet_cut["pt"])
            & (abs(jets.eta) < bjet_cut["eta"])
            & (jets[field(self.branches["btag"])] > bjet_cut["wp"])
        )
        selected = jets[good]
        selected = selected[ak.argsort(selected.pt, axis=1, ascending=False)]
        return selected, jets[btagged]

    def _columns(self, objects: dict[str, Any]) -> dict[str, np.ndarray]:
        """Event keys, features and weight inputs of the selected events, as flat arrays."""
        muon, tau = objects["muon"][:, 0], objects["tau"][:, 0]
        met_x, met_y = _np(objects["met_x"]), _np(objects["met_y"])
        leptons = {
            "pt_1": _np(muon.pt), "eta_1": _np(muon.eta), "phi_1": _np(muon.phi),
            "iso_1": _np(muon[field(self.branches["muon_iso"])]),
            "pt_2": _np(tau.pt), "eta_2": _np(tau.eta), "phi_2": _np(tau.phi), "m_2": _np(tau.mass),
        }  # fmt: skip
        features = _ditau_features(leptons, _np(muon.mass), met_x, met_y)
        features.update(leptons)
        features.update(_jet_features(objects["jets"], objects["bjets"]))
        columns: dict[str, np.ndarray] = {
            key: _np(objects["keys"][key]).astype(dtype)
            for key, dtype in zip(EVENT_KEYS, (np.uint32, np.uint32, np.uint64), strict=True)
        }
        columns.update({name: features[name].astype(np.float32) for name in FEATURES})
        columns["dm_2"] = _np(tau.decayMode).astype(np.int32)
        columns["gen_match_2"] = (
            _np(objects["tau_genmatch"][:, 0]).astype(np.int32)
            if self.simulation
            else np.full(len(met_x), -1, dtype=np.int32)
        )
        columns["is_os"] = (_np(muon.charge) * _np(tau.charge) < 0).astype(np.int32)
        for column in self.weight_sources:
            columns[column] = _np(objects["weight_inputs"][column]).astype(np.float32)
        return columns


def _isin(values: ak.Array, allowed: Sequence[int]) -> ak.Array:
    mask = values == allowed[0]
    for value in allowed[1:]:
        mask = mask | (values == value)
    return mask


def _leading_index(objects: ak.Array, mask: ak.Array) -> ak.Array:
    """Per event, a one-element index list of the highest-pT object passing ``mask``."""
    pt = ak.where(mask, objects.pt, -np.inf)
    return ak.argmax(pt, axis=1, keepdims=True)


def _take(objects: dict[str, Any], mask: ak.Array) -> dict[str, Any]:
    """Keep the events passing ``mask`` in every per-event entry (nested dicts included)."""
    kept: dict[str, Any] = {}
    for key, value in objects.items():
        if value is None:
            kept[key] = None
        elif isinstance(value, dict):
            kept[key] = _take(value, mask)
        elif isinstance(value, tuple):
            kept[key] = tuple(item[mask] for item in value)
        else:
            kept[key] = value[mask]
    return kept


def _scaled(objects: ak.Array, factor: ak.Array | float) -> ak.Array:
    """Objects with pt and mass multiplied by ``factor`` (an energy-scale shift)."""
    shifted = ak.with_field(objects, objects.pt * factor, "pt")
    return ak.with_field(shifted, objects.mass * factor, "mass")


def _propagate_to_met(
    nominal: dict[str, Any], objects: ak.Array, factor: ak.Array | float
) -> tuple[ak.Array, ak.Array]:
    """MET after rescaling ``objects``: the MET vector absorbs minus the change of their pT sum."""
    delta_pt = objects.pt * (factor - 1.0)
    dx = ak.sum(delta_pt * np.cos(objects.phi), axis=1)
    dy = ak.sum(delta_pt * np.sin(objects.phi), axis=1)
    return nominal["met_x"] - dx, nominal["met_y"] - dy


def _np(values: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(values))


def transverse_mass(
    pt_a: np.ndarray, phi_a: np.ndarray, pt_b: np.ndarray, phi_b: np.ndarray
) -> np.ndarray:
    """Transverse mass of two massless objects."""
    return np.sqrt(np.maximum(2.0 * pt_a * pt_b * (1.0 - np.cos(phi_a - phi_b)), 0.0))


def collinear_mass(
    m_vis: np.ndarray,
    px: tuple[np.ndarray, np.ndarray],
    py: tuple[np.ndarray, np.ndarray],
    met_x: np.ndarray,
    met_y: np.ndarray,
) -> np.ndarray:
    """Ditau mass in the collinear approximation: neutrinos along the visible tau products.

    Solves MET = r1 * p1 + r2 * p2 (transverse) for the neutrino-to-visible momentum ratios r_i
    (clipped at 0 where MET points away), then m_coll = m_vis * sqrt((1 + r1) * (1 + r2)).
    """
    det = px[0] * py[1] - px[1] * py[0]
    safe = np.where(np.abs(det) > 1e-6, det, np.nan)
    r1 = np.clip((met_x * py[1] - met_y * px[1]) / safe, 0.0, None)
    r2 = np.clip((px[0] * met_y - py[0] * met_x) / safe, 0.0, None)
    m_coll = m_vis * np.sqrt((1.0 + r1) * (1.0 + r2))
    return np.where(np.isfinite(m_coll), m_coll, m_vis)


def _ditau_features(
    f: Mapping[str, np.ndarray], mass_1: np.ndarray, met_x: np.ndarray, met_y: np.ndarray
) -> dict[str, np.ndarray]:
    p4 = [
        _p4(f[f"pt_{i}"], f[f"eta_{i}"], f[f"phi_{i}"], m) for i, m in ((1, mass_1), (2, f["m_2"]))
    ]
    vis = p4[0] + p4[1]
    m_vis = np.sqrt(np.maximum(vis[3] ** 2 - vis[0] ** 2 - vis[1] ** 2 - vis[2] ** 2, 0.0))
    met = np.hypot(met_x, met_y)
    met_phi = np.arctan2(met_y, met_x)
    mt_1 = transverse_mass(f["pt_1"], f["phi_1"], met, met_phi)
    mt_2 = transverse_mass(f["pt_2"], f["phi_2"], met, met_phi)
    mt_12 = transverse_mass(f["pt_1"], f["phi_1"], f["pt_2"], f["phi_2"])
    deta = f["eta_1"] - f["eta_2"]
    dphi = (f["phi_1"] - f["phi_2"] + np.pi) % (2 * np.pi) - np.pi
    return {
        "m_vis": m_vis,
        "pt_vis": np.hypot(vis[0], vis[1]),
        "m_coll": collinear_mass(m_vis, (p4[0][0], p4[1][0]), (p4[0][1], p4[1][1]), met_x, met_y),
        "pt_tt": np.hypot(vis[0] + met_x, vis[1] + met_y),
        "dR_ll": np.hypot(deta, dphi),
        "met": met,
        "met_phi": met_phi,
        "mt_1": mt_1,
        "mt_2": mt_2,
        "mt_tot": np.sqrt(mt_1**2 + mt_2**2 + mt_12**2),
    }


def _p4(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(px, py, pz, E) in float64 from pt, eta, phi, mass."""
    pt, eta, phi, mass = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, mass))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)])


def _jet_features(jets: ak.Array, bjets: ak.Array) -> dict[str, np.ndarray]:
    padded = ak.pad_none(jets, 2, axis=1)
    lead = [padded[:, i] for i in range(2)]
    pt = [ak.to_numpy(ak.fill_none(j.pt, np.nan)).astype(np.float64) for j in lead]
    eta = [ak.to_numpy(ak.fill_none(j.eta, np.nan)).astype(np.float64) for j in lead]
    phi = [ak.to_numpy(ak.fill_none(j.phi, np.nan)).astype(np.float64) for j in lead]
    mass = [ak.to_numpy(ak.fill_none(j.mass, np.nan)).astype(np.float64) for j in lead]
    dijet = _p4(pt[0], eta[0], phi[0], mass[0]) + _p4(pt[1], eta[1], phi[1], mass[1])
    mjj = np.sqrt(np.maximum(dijet[3] ** 2 - dijet[0] ** 2 - dijet[1] ** 2 - dijet[2] ** 2, 0.0))
    features = {
        "njets": ak.to_numpy(ak.num(jets)).astype(np.float64),
        "nbtag": ak.to_numpy(ak.num(bjets)).astype(np.float64),
        "jpt_1": pt[0], "jeta_1": eta[0], "jpt_2": pt[1], "jeta_2": eta[1],
        "mjj": np.where(np.isnan(pt[1]), np.nan, mjj),
        "deta_jj": np.abs(eta[0] - eta[1]),
    }  # fmt: skip
    return {name: np.nan_to_num(values, nan=MISSING) for name, values in features.items()}


# -- driver -------------------------------------------------------------------------------------


@contextlib.contextmanager
def dask_executor(
    workers: int, dask: Mapping[str, Any]
) -> Iterator[processor.executor.ExecutorBase]:
    """The coffea executor for ``preselect.dask.mode``, with its cluster torn down afterwards.

    ``local`` starts a distributed LocalCluster with one single-threaded process per worker (the
    rule's threads); ``scheduler`` connects to ``dask.address``; ``slurm`` starts a dask-jobqueue
    SLURMCluster of ``dask.jobs`` worker jobs, each configured the dask-jobqueue way (the
    ``jobqueue.slurm`` section of the dask config: ~/.config/dask/jobqueue.yaml or
    ``DASK_JOBQUEUE__SLURM__*`` variables); ``none`` runs chunks in this process.
    """
    mode = dask["mode"]
    if mode == "none":
        yield processor.IterativeExecutor(status=False)
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if mode == "local":
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None, memory_limit=0,
            )  # fmt: skip
        elif mode == "scheduler":
            if not dask.get("address"):
                raise AnalysisError(
                    "preselect.dask.mode is 'scheduler' but preselect.dask.address is not set; "
                    "give the scheduler address (tcp://host:8786)"
                )
            cluster = dask["address"]
        elif mode == "slurm":
            cluster = _slurm_cluster(dask.get("jobs", 1))
        else:
            raise AnalysisError(
                f"preselect.dask.mode: unknown mode {mode!r}; use local, scheduler, slurm or none"
            )
        if not isinstance(cluster, str):
            stack.enter_context(cluster)
        client = stack.enter_context(Client(cluster))
        yield processor.DaskExecutor(client=client, status=False, retries=0)


def _slurm_cluster(jobs: int) -> Any:
    """A dask-jobqueue SLURMCluster scaled to ``jobs`` worker jobs (one core each by default)."""
    import dask.config
    from dask_jobqueue import SLURMCluster

    defaults = {"cores": 1, "memory": "4GB", "processes": 1}
    overrides = {
        k: v for k, v in defaults.items() if dask.config.get(f"jobqueue.slurm.{k}") is None
    }
    cluster = SLURMCluster(**overrides)
    cluster.scale(jobs=jobs)
    return cluster


def run_preselection(
    sample_name: str,
    sample: Mapping[str, Any],
    files: Sequence[str],
    settings: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    chunksize: int,
    workers: int = 1,
    dask: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Preselect one sample: write ``<variation>.root`` and ``<variation>.cutflow.json``.

    Args:
        sample_name: the sample's name in the samples file (for messages and outputs).
        sample: its entry in the samples file (``type``, ``alternative``, ``treename``, ...).
        files: its NanoAOD files, in order (the order of the output rows).
        settings: config sections ``branches``, ``selection``, ``variations``, ``weights``.
        output_dir: directory receiving the skims and cutflows.
        chunksize: events per chunk.
        workers: dask workers for the local cluster.
        dask: the ``preselect.dask`` config section (default: local cluster).

    Returns:
        The cutflow per variation, as written to the JSON files.
    """
    treename = sample.get("treename", "Events")
    simulation = is_simulation(sample)
    check_inputs(files, treename, required_branches(settings, simulation), sample_name)
    variations = sample_variations(sample, settings["variations"])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # scratch of an earlier attempt of this sample's job that was killed outright
    for stale in output_dir.glob(".chunks-*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=".chunks-", dir=output_dir))
    try:
        for variation in variations:
            (scratch / variation).mkdir()
        proc = SkimProcessor(
            settings, sample, variations, str(scratch), {path: i for i, path in enumerate(files)}
        )
        fileset = {sample_name: {"files": {path: treename for path in files}}}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="coffea")
            with dask_executor(workers, dask or {"mode": "local"}) as executor:
                runner = processor.Runner(
                    executor=executor, schema=NanoAODSchema, chunksize=chunksize, savemetrics=False
                )
                result = _unwrap_worker_errors(runner, fileset, proc, treename)
        result = _with_empty_defaults(result, variations)
        sumw = _sum_of_weights(result, files, settings, simulation)
        cutflows = {}
        for variation in variations:
            cutflows[variation] = _cutflow(sample_name, variation, files, result, sumw)
            _merge_chunks(
                scratch / variation, sorted(result["chunks"]), output_dir / f"{variation}.root"
            )
            write_json(output_dir / f"{variation}.cutflow.json", cutflows[variation])
            _warn_if_empty(sample_name, variation, cutflows[variation])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cutflows


def _unwrap_worker_errors(
    runner: processor.Runner, fileset: dict[str, Any], proc: SkimProcessor, treename: str
) -> dict[str, Any]:
    """Run coffea, turning an AnalysisError raised in a worker back into one clear line.

    coffea wraps worker exceptions in a generic ``Exception`` whose message embeds the repr of
    the original; the chain does not always survive the trip from a dask worker.
    """
    try:
        return runner(fileset, processor_instance=proc, treename=treename)
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, AnalysisError):
                raise AnalysisError(str(cause)) from None
            cause = cause.__cause__
        match = re.search(r"AnalysisError\((['\"])(.*)\1\)", str(err))
        if match:
            raise AnalysisError(match.group(2)) from None
        raise


def _with_empty_defaults(
    result: Mapping[str, Any] | None, variations: Sequence[str]
) -> dict[str, Any]:
    """Accumulated output for inputs without any event (coffea returns nothing then)."""
    result = dict(result or {})
    result.setdefault("chunks", [])
    result.setdefault("sumw", {"events": 0.0, "genWeight": 0.0})
    cutflow = dict(result.get("cutflow") or {})
    for variation in variations:
        cutflow.setdefault(variation, {cut: {"events": 0.0, "weighted": 0.0} for cut in CUTS})
    result["cutflow"] = cutflow
    return result


def _sum_of_weights(
    result: Mapping[str, Any], files: Sequence[str], settings: Mapping[str, Any], simulation: bool
) -> dict[str, Any]:
    """Normalisation inputs for the friend trees: generator-weight sums and their source."""
    if not simulation:
        return {"source": "data"}
    from_runs = generator_sumw(files, settings["branches"]["gen_event_sumw"])
    processed = result["sumw"]
    if from_runs is None:
        log.warning(
            "no Runs tree with %s: normalising to the processed events' genWeight sum",
            " or ".join(settings["branches"]["gen_event_sumw"]),
        )
    return {
        "source": "Runs tree" if from_runs is not None else "processed events",
        "genEventSumw": from_runs if from_runs is not None else processed["genWeight"],
        "processed": {k: v for k, v in sorted(processed.items())},
    }


def _cutflow(
    sample: str,
    variation: str,
    files: Sequence[str],
    result: Mapping[str, Any],
    sumw: Mapping[str, Any],
) -> dict[str, Any]:
    steps = result["cutflow"][variation]
    return {
        "sample": sample,
        "variation": variation,
        "files": list(files),
        "cuts": [{"name": cut, **steps[cut]} for cut in CUTS],
        "sumw": sumw,
    }


def _warn_if_empty(sample: str, variation: str, cutflow: Mapping[str, Any]) -> None:
    if cutflow["cuts"][-1]["events"] == 0:
        log.warning(
            "sample '%s' variation '%s': the selection kept 0 events; wrote an empty skim",
            sample,
            variation,
        )


def _merge_chunks(chunk_dir: Path, chunks: Sequence[str], output: Path) -> None:
    """Concatenate per-chunk rows into one TTree, chunk by chunk (bounded memory)."""
    from analysis.core.io import atomic_path

    with atomic_path(output) as tmp, uproot.recreate(tmp) as fout:
        tree = None
        for chunk in chunks:
            with np.load(chunk_dir / chunk) as rows:
                columns = {name: rows[name] for name in rows.files}
            if tree is None:
                tree = fout.mktree(
                    "Events", {name: values.dtype for name, values in columns.items()}
                )
            if len(columns["event"]):
                tree.extend(columns)
        if tree is None:  # no chunk at all: an input without events
            fout.mktree("Events", {key: np.float32 for key in (*EVENT_KEYS, *FEATURES)})


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Preselect one sample (coffea + dask).")
    parser.add_argument("--sample", required=True, help="sample name in the samples file")
    parser.add_argument("--sample-spec", required=True, help="the sample's entry, as JSON")
    parser.add_argument("--files", required=True, nargs="+", help="input NanoAOD files")
    parser.add_argument("--settings", required=True, help="config sections, as JSON")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--dask-mode", default="local", choices=("local", "scheduler", "slurm", "none")
    )
    parser.add_argument("--dask-address", default="none", help="scheduler address (scheduler mode)")
    parser.add_argument("--dask-jobs", type=int, default=1, help="worker jobs (slurm mode)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cutflows = run_preselection(
        args.sample,
        json.loads(args.sample_spec),
        args.files,
        json.loads(args.settings),
        args.output_dir,
        args.chunksize,
        args.workers,
        {
            "mode": args.dask_mode,
            "address": None if args.dask_address == "none" else args.dask_address,
            "jobs": args.dask_jobs,
        },
    )
    for variation, cutflow in cutflows.items():
        last = cutflow["cuts"][-1]
        log.info(
            "%s %s: %d events selected (weighted %.6g)",
            args.sample,
            variation,
            last["events"],
            last["weighted"],
        )


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
