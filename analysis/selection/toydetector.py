"""Detector response of the toy dataset: reconstructed objects from generator-level events.

Detector effects are simple Gaussian smearings; identification discriminants are drawn per object
type (genuine tau_h, muons and jets faking tau_h); the MET is the neutrinos' transverse momentum
minus the mismeasurement of the visible objects. For pseudo-data the truth shifts of
``toydata.truth`` (energy scales, tau_h ID scale factor) are applied to the reconstructed objects,
and, with ``toydata.truth.mismodel``, one input variable is shifted beyond any variation the model
has (to test that the goodness-of-fit tests of the inputs catch it).

Like :mod:`analysis.selection.toyphysics`, every function draws in a fixed order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.core.errors import AnalysisError
from analysis.selection.nanoaod import GENUINE_TAU
from analysis.selection.shifts import MET_PROPAGATION_JET_PT
from analysis.selection.toyphysics import DECAY_MODES, MASS, UNMATCHED, Event, Particles

#: Cumulative working points on the raw discriminant (VVVLoose ... VVTight; VLoose ... Tight).
VSJET_THRESHOLDS = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.62, 0.75, 0.85])
VSMU_THRESHOLDS = np.array([0.20, 0.40, 0.60, 0.80])
MEDIUM_VSJET = 16
#: Tau_genPartFlav of a prompt muon reconstructed as tau_h.
MUON_AS_TAU = 2
#: The input variables (skim columns) ``toydata.truth.mismodel`` can shift: the object and field
#: each is read from.
MISMODELLED_FIELDS = {
    "pt_1": ("muon", "pt"),
    "eta_1": ("muon", "eta"),
    "iso_1": ("muon", "pfRelIso04_all"),
    "pt_2": ("tau", "pt"),
    "eta_2": ("tau", "eta"),
    "m_2": ("tau", "mass"),
}


def detector_response(rng: np.random.Generator, ev: Event, process: str) -> dict[str, Any]:
    """Reconstructed objects: smearing, IDs, jets, MET; returns NanoAOD-like columns."""
    n = ev.n
    mu_pt = ev.muon.pt * rng.normal(1.0, 0.01, n)
    tau = _smeared_tau(rng, ev)
    vs_jet, vs_mu = _tau_id(rng, ev.tau_kind)
    jets, jet_p4, jet_counts = _reco_jets(rng, ev)
    met = _met(rng, ev, mu_pt, tau, jets["pt"], jet_p4, jet_counts)
    iso = rng.exponential(ev.muon_iso_scale, n)
    pileup = rng.poisson(32, n)
    return {
        "muon": {
            "pt": mu_pt,
            "eta": ev.muon.eta,
            "phi": ev.muon.phi,
            "mass": np.full(n, MASS["mu"]),
            "charge": ev.muon_charge,
            "pfRelIso04_all": iso,
            "tightId": rng.random(n) < (0.9 if process == "QCD" else 0.98),
            "genPartFlav": ev.muon_flav,
        },
        "tau": _tau_columns(ev, tau, vs_jet, vs_mu),
        "jet": jets,
        "jet_counts": jet_counts,
        "met": met,
        "met_uncl": (rng.normal(0, 3.0, n), rng.normal(0, 3.0, n)),
        "trigger": (mu_pt > 24) & (iso < 0.15) & (rng.random(n) < 0.92),
        "pileup": pileup,
        "boson_pt": ev.boson_pt,
        "n_extra_jets": jet_counts,
    }


def _smeared_tau(rng: np.random.Generator, ev: Event) -> Particles:
    """The tau_h candidate with the energy resolution of genuine tau_h (fakes keep theirs)."""
    scale = np.where(ev.tau_kind == "tau", rng.normal(1.0, 0.03, ev.n), 1.0)
    return Particles.from_pt_eta_phi_m(ev.tau.pt * scale, ev.tau.eta, ev.tau.phi, ev.tau.mass)


def _tau_id(rng: np.random.Generator, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepTau-like cumulative bitmasks (VSjet, VSmu) for genuine and faked tau_h."""
    n = len(kind)
    vs_jet = np.where(kind == "jet", rng.beta(1.0, 4.0, n), rng.beta(6.0, 1.3, n))
    vs_mu = np.where(kind == "muon", rng.beta(1.0, 3.0, n), rng.beta(9.0, 1.0, n))
    return _bitmask(vs_jet, VSJET_THRESHOLDS), _bitmask(vs_mu, VSMU_THRESHOLDS)


def _bitmask(score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    passed = score[:, None] > thresholds[None, :]
    return (passed * (1 << np.arange(len(thresholds)))).sum(axis=1).astype(np.uint8)


def _tau_columns(
    ev: Event, tau: Particles, vs_jet: np.ndarray, vs_mu: np.ndarray
) -> dict[str, np.ndarray]:
    kind = ev.tau_kind
    return {
        "pt": tau.pt,
        "eta": tau.eta,
        "phi": tau.phi,
        "mass": tau.mass,
        "charge": ev.tau_charge,
        "decayMode": ev.tau_dm,
        "idDeepTau2017v2p1VSjet": vs_jet,
        "idDeepTau2017v2p1VSmu": vs_mu,
        "genPartFlav": np.select(
            [kind == "tau", kind == "muon"], [GENUINE_TAU, MUON_AS_TAU], UNMATCHED
        ),
    }


def _reco_jets(
    rng: np.random.Generator, ev: Event
) -> tuple[dict[str, np.ndarray], Particles, np.ndarray]:
    """Jet columns (flat) with smeared pT, b tagging and ID; the true jets; jets per event."""
    jet_p4, is_b, counts = _collect_jets(ev)
    total = len(is_b)
    pt = jet_p4.pt * rng.normal(1.0, 0.08, total)
    is_b = is_b.astype(bool)
    btag = np.where(is_b, rng.beta(6.0, 1.2, total), rng.beta(0.6, 8.0, total))
    jet_id = np.where(rng.random(total) < 0.97, 6, rng.choice([0, 2], total)).astype(np.int32)
    columns = {
        "pt": pt,
        "eta": jet_p4.eta,
        "phi": jet_p4.phi,
        "mass": jet_p4.mass * pt / np.maximum(jet_p4.pt, 1e-9),
        "btagDeepFlavB": btag,
        "hadronFlavour": np.where(is_b, 5, 0).astype(np.int32),  # the toy has no charm jets
        "jetId": jet_id,
    }
    return columns, jet_p4, counts


def _collect_jets(ev: Event) -> tuple[Particles, np.ndarray, np.ndarray]:
    """All jets of the events, flattened event by event, with per-event counts."""
    n = ev.n
    per_object = [(jets, is_b, np.ones(n, dtype=np.int64)) for jets, is_b in ev.jets]
    blocks = [*per_object, ev.extra_jets]
    counts = sum(block[2] for block in blocks)
    event_of = [np.repeat(np.arange(n), block[2]) for block in blocks]
    order = np.argsort(np.concatenate(event_of), kind="stable")
    p4 = np.concatenate([block[0].p4 for block in blocks], axis=1)[:, order]
    is_b = np.concatenate([block[1] for block in blocks])[order]
    return Particles(p4), is_b, counts


def _met(
    rng: np.random.Generator,
    ev: Event,
    mu_pt: np.ndarray,
    tau: Particles,
    jet_pt: np.ndarray,
    jet_p4: Particles,
    jet_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """MET (x, y): neutrinos, minus the mismeasurement of visible objects, plus resolution."""
    mu, n = ev.muon, ev.n
    visible_dx = (mu_pt - mu.pt) * np.cos(mu.phi) + (tau.pt - ev.tau.pt) * np.cos(tau.phi)
    visible_dy = (mu_pt - mu.pt) * np.sin(mu.phi) + (tau.pt - ev.tau.pt) * np.sin(tau.phi)
    jet_dpt = jet_pt - jet_p4.pt
    event_index = np.repeat(np.arange(n), jet_counts)
    jet_dx = np.bincount(event_index, jet_dpt * np.cos(jet_p4.phi), minlength=n)
    jet_dy = np.bincount(event_index, jet_dpt * np.sin(jet_p4.phi), minlength=n)
    met_x = ev.neutrinos[0] - visible_dx - jet_dx + rng.normal(0, 12.0, n)
    met_y = ev.neutrinos[1] - visible_dy - jet_dy + rng.normal(0, 12.0, n)
    return met_x, met_y


# -- pseudo-data --------------------------------------------------------------------------------


def apply_truth_shifts(
    reco: dict[str, Any], nuisances: Mapping[str, float], variations: Mapping[str, Any]
) -> None:
    """Shift pseudo-data like the analysis' shape variations do, by ``nuisances`` sigmas."""
    tau, jet = reco["tau"], reco["jet"]
    old_tau = tau["pt"].copy()
    if nuisances.get("tau_es") and variations.get("tau_es"):
        sigma = np.zeros(len(old_tau))
        for dm, value in variations["tau_es"].items():
            sigma[tau["decayMode"] == int(dm)] = value
        factor = 1 + nuisances["tau_es"] * np.where(tau["genPartFlav"] == GENUINE_TAU, sigma, 0.0)
        tau["pt"], tau["mass"] = tau["pt"] * factor, tau["mass"] * factor
    old_jet = jet["pt"].copy()
    if nuisances.get("jet_es") and variations.get("jet_es"):
        factor = 1 + nuisances["jet_es"] * variations["jet_es"]
        jet["pt"], jet["mass"] = jet["pt"] * factor, jet["mass"] * factor
    met_x, met_y = reco["met"]
    met_x = met_x - (tau["pt"] - old_tau) * np.cos(tau["phi"])
    met_y = met_y - (tau["pt"] - old_tau) * np.sin(tau["phi"])
    event_index = np.repeat(np.arange(len(old_tau)), reco["jet_counts"])
    dpt = np.where(old_jet > MET_PROPAGATION_JET_PT, jet["pt"] - old_jet, 0.0)
    met_x = met_x - np.bincount(event_index, dpt * np.cos(jet["phi"]), minlength=len(old_tau))
    met_y = met_y - np.bincount(event_index, dpt * np.sin(jet["phi"]), minlength=len(old_tau))
    reco["met"] = (met_x, met_y)


def apply_mismodelling(reco: dict[str, Any], mismodel: Mapping[str, Any] | None) -> None:
    """Add ``mismodel["shift"]`` (in the variable's units) to the object field of the input
    variable ``mismodel["variable"]`` (None: no change), and nothing else: no systematic
    variation of the simulation moves that field alone, and the other objects and the MET keep
    their values, so only that variable and the features computed from it disagree with the
    simulation.

    Raises:
        AnalysisError: a variable not in :data:`MISMODELLED_FIELDS`.
    """
    variable = (mismodel or {}).get("variable")
    if variable is None:
        return
    if variable not in MISMODELLED_FIELDS:
        raise AnalysisError(
            f"toydata.truth.mismodel.variable: {variable!r} cannot be shifted; use one of "
            f"{', '.join(MISMODELLED_FIELDS)} or null"
        )
    collection, field = MISMODELLED_FIELDS[variable]
    reco[collection][field] = reco[collection][field] + float(mismodel["shift"])


def apply_tau_id_sf(
    rng: np.random.Generator, reco: dict[str, Any], tau_id_sf: Mapping[str, str] | None
) -> None:
    """Data/simulation difference: demote genuine tau_h passing Medium with probability 1 - SF."""
    if not tau_id_sf:
        return
    from analysis.selection.corrections import evaluate_tau_id_sf, load_correction

    tau = reco["tau"]
    eligible = (
        (tau["genPartFlav"] == GENUINE_TAU)
        & np.isin(tau["decayMode"], DECAY_MODES)
        & (tau["idDeepTau2017v2p1VSjet"] >= MEDIUM_VSJET)
    )
    if not eligible.any():
        return
    correction = load_correction(tau_id_sf["file"], tau_id_sf["correction"])
    sf = np.ones(len(eligible))
    sf[eligible] = evaluate_tau_id_sf(
        correction, tau["pt"][eligible], tau["decayMode"][eligible], "nom"
    )
    demote = eligible & (rng.random(len(sf)) > np.minimum(sf, 1.0))
    tau["idDeepTau2017v2p1VSjet"] = np.where(
        demote, MEDIUM_VSJET - 1, tau["idDeepTau2017v2p1VSjet"]
    ).astype(np.uint8)
