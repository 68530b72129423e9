"""Built-in toy dataset: NanoAOD-like ROOT files for an H->tautau -> mu tau_h analysis.

Events are built from physics with vectorised numpy: a boson (H, Z, W) or a top pair is produced
with a transverse-momentum spectrum and a rapidity, decays isotropically in its rest frame, taus
decay into visible products and neutrinos in the collinear approximation, and the neutrinos make
the missing transverse momentum. So the visible mass of H->tautau peaks well below 125 GeV, the
collinear mass near it, Z->tautau near 91, and W+jets has large transverse masses: a classifier
has something real to learn. Detector effects are simple Gaussian smearings; identification
discriminants are drawn per object type (genuine tau_h, muons and jets faking tau_h).

The output has the CMS NanoAOD layout read by coffea's ``NanoAODSchema``: jagged ``Muon_*``,
``Tau_*``, ``Jet_*`` with ``n<Collection>`` counters, ``MET_*``, ``HLT_IsoMu24``, event keys, and
for simulation ``genWeight`` (some negative), ``*_genPartFlav``, pileup weights, ``LHEScaleWeight``,
``PSWeight`` and a ``Runs`` tree with ``genEventSumw``.

Pseudo-data are drawn from the nominal simulated processes: Poisson(mu * xsec * lumi) events
each, with the truth shifts of ``toydata.truth`` applied (signal strengths, tau_h and jet energy
scales, and the tau_h ID scale factor), so closure tests know the answer.

Usage: ``python -m analysis.selection.toydata --sample NAME --settings JSON --output FILE.root``.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from analysis.core.config import has_shape_variations
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path

#: Events generated and written per chunk: bounds memory for any ``scale``.
CHUNK = 100_000

MASS = {"H": 125.0, "Z": 91.19, "W": 80.38, "t": 172.5, "tau": 1.777, "mu": 0.1057, "b": 4.8}
WIDTH = {"H": 0.004, "Z": 2.50, "W": 2.09}
#: Visible mass and relative frequency of the tau_h decay modes (HPS decay modes).
DECAY_MODES = np.array([0, 1, 10, 11])
DECAY_MODE_FRACTIONS = np.array([0.25, 0.50, 0.20, 0.05])
FAKE_DECAY_MODES = np.array([0, 1, 10, 11, 5, 6])
FAKE_DECAY_MODE_FRACTIONS = np.array([0.30, 0.30, 0.20, 0.10, 0.05, 0.05])
VISIBLE_MASS = {0: 0.14, 1: 0.77, 10: 1.1, 11: 1.3, 5: 0.9, 6: 1.0}
#: Cumulative working points on the raw discriminant (VVVLoose ... VVTight; VLoose ... Tight).
VSJET_THRESHOLDS = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.62, 0.75, 0.85])
VSMU_THRESHOLDS = np.array([0.20, 0.40, 0.60, 0.80])
MEDIUM_VSJET = 16
#: Generator flags (Tau_genPartFlav / Muon_genPartFlav).
GENUINE_TAU, PROMPT_MUON, MUON_FROM_TAU, UNMATCHED = 5, 1, 15, 0
#: NLO-like processes get a fraction of negative generator weights.
NEGATIVE_WEIGHT_FRACTION = {"ZTT": 0.10, "ZL": 0.10, "TT": 0.05, "W": 0.12}
#: Generator-level phase space of every toy sample; `xsec` in the samples file is the cross
#: section inside it (like a filtered production), so that few generated events are wasted.
PHASE_SPACE = {"muon_pt": 20.0, "tau_pt": 25.0, "eta": 2.4}
DATA_RUNS = np.array([315257, 315361, 315420, 316187, 316590, 317080, 319077, 320841])


class Particles:
    """Four-vectors (E, px, py, pz) of one object per event, as arrays of shape (4, n)."""

    def __init__(self, p4: np.ndarray) -> None:
        self.p4 = p4

    @classmethod
    def from_pt_eta_phi_m(
        cls, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, m: np.ndarray
    ) -> Particles:
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        return cls(np.stack([np.sqrt(px**2 + py**2 + pz**2 + m**2), px, py, pz]))

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.p4[1], self.p4[2])

    @property
    def eta(self) -> np.ndarray:
        return np.arcsinh(self.p4[3] / np.maximum(self.pt, 1e-9))

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.p4[2], self.p4[1])

    @property
    def mass(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.p4[0] ** 2 - (self.p4[1:] ** 2).sum(axis=0), 0.0))

    def __add__(self, other: Particles) -> Particles:
        return Particles(self.p4 + other.p4)

    def scaled(self, factor: np.ndarray | float) -> Particles:
        return Particles(self.p4 * factor)


def _resonance(rng: np.random.Generator, n: int, boson: str, mean_pt: float) -> Particles:
    """A boson with a Breit-Wigner mass, a gamma-distributed pT and a Gaussian rapidity."""
    mass = MASS[boson] + WIDTH[boson] / 2 * np.tan(np.pi * (rng.random(n) - 0.5))
    mass = np.clip(mass, MASS[boson] - 5 * WIDTH[boson] - 2, MASS[boson] + 5 * WIDTH[boson] + 2)
    pt = rng.gamma(1.6, mean_pt / 1.6, n)
    return _from_pt_y(rng, pt, rng.normal(0.0, 1.4, n), mass)


def _from_pt_y(
    rng: np.random.Generator, pt: np.ndarray, y: np.ndarray, mass: np.ndarray
) -> Particles:
    mt = np.sqrt(mass**2 + pt**2)
    phi = rng.uniform(-np.pi, np.pi, len(pt))
    return Particles(
        np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)])
    )


def two_body_decay(
    rng: np.random.Generator, parent: Particles, m1: float | np.ndarray, m2: float | np.ndarray
) -> tuple[Particles, Particles]:
    """Isotropic two-body decay in the parent's rest frame, boosted to the lab."""
    n = parent.p4.shape[1]
    m = parent.mass
    m1, m2 = np.broadcast_to(m1, n), np.broadcast_to(m2, n)
    p = np.sqrt(np.maximum((m**2 - (m1 + m2) ** 2) * (m**2 - (m1 - m2) ** 2), 0.0)) / (2 * m)
    cos_theta = rng.uniform(-1, 1, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin_theta = np.sqrt(1 - cos_theta**2)
    direction = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta])
    rest1 = np.vstack([np.sqrt(p**2 + m1**2), p * direction])
    rest2 = np.vstack([np.sqrt(p**2 + m2**2), -p * direction])
    beta = parent.p4[1:] / parent.p4[0]
    return Particles(_boost(rest1, beta)), Particles(_boost(rest2, beta))


def _boost(p4: np.ndarray, beta: np.ndarray) -> np.ndarray:
    b2 = np.maximum((beta**2).sum(axis=0), 1e-12)
    gamma = 1 / np.sqrt(1 - np.minimum(b2, 1 - 1e-12))
    bp = (beta * p4[1:]).sum(axis=0)
    energy = gamma * (p4[0] + bp)
    momentum = p4[1:] + beta * ((gamma - 1) * bp / b2 + gamma * p4[0])
    return np.vstack([energy, momentum])


def _leptonic_fraction(rng: np.random.Generator, n: int) -> np.ndarray:
    """Visible momentum fraction of tau -> mu nu nu (unpolarised spectrum, by rejection)."""
    out = np.empty(0)
    while len(out) < n:
        x = rng.random(2 * n)
        keep = rng.random(2 * n) * 5 / 3 < (5 - 9 * x**2 + 4 * x**3) / 3
        out = np.concatenate([out, x[keep]])
    return np.maximum(out[:n], 0.02)


class Event:
    """Per-event building blocks of one process, before detector effects and ID."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.muon: Particles | None = None
        self.muon_flav = np.full(n, PROMPT_MUON)
        self.muon_charge = np.ones(n, dtype=np.int32)
        self.muon_iso_scale = 0.03
        self.tau: Particles | None = None
        self.tau_kind = np.full(n, "tau", dtype=object)  # tau, muon or jet
        self.tau_charge = -np.ones(n, dtype=np.int32)
        self.tau_dm = np.zeros(n, dtype=np.int32)
        self.neutrinos = np.zeros((2, n))
        self.jets: list[tuple[Particles, np.ndarray]] = []  # (jets, is_b)
        self.boson_pt = np.zeros(n)


def _tau_decay(
    rng: np.random.Generator, tau: Particles, hadronic: bool
) -> tuple[Particles, np.ndarray, np.ndarray]:
    """Collinear tau decay: returns (visible products, neutrino px/py, decay modes)."""
    n = tau.p4.shape[1]
    if hadronic:
        dm = rng.choice(DECAY_MODES, n, p=DECAY_MODE_FRACTIONS)
        x = rng.uniform(0.05, 1.0, n)
        mass = np.vectorize(VISIBLE_MASS.get)(dm) * rng.normal(1.0, 0.1, n)
    else:
        dm = np.full(n, -1)
        x = _leptonic_fraction(rng, n)
        mass = np.full(n, MASS["mu"])
    visible = Particles.from_pt_eta_phi_m(tau.pt * x, tau.eta, tau.phi, np.abs(mass))
    neutrinos = tau.p4[1:3] * (1 - x)
    return visible, neutrinos, dm


def _ditau(rng: np.random.Generator, boson: Particles, ev: Event) -> None:
    """boson -> tau tau -> mu + tau_h + neutrinos."""
    tau1, tau2 = two_body_decay(rng, boson, MASS["tau"], MASS["tau"])
    ev.muon, nu1, _ = _tau_decay(rng, tau1, hadronic=False)
    ev.tau, nu2, ev.tau_dm = _tau_decay(rng, tau2, hadronic=True)
    ev.neutrinos = nu1 + nu2
    ev.muon_flav[:] = MUON_FROM_TAU
    sign = rng.choice([-1, 1], ev.n)
    ev.muon_charge, ev.tau_charge = sign.astype(np.int32), -sign.astype(np.int32)


def _jets(
    rng: np.random.Generator, n: int, mean_count: float, mean_pt: float, b_fraction: float = 0.02
) -> tuple[Particles, np.ndarray, np.ndarray]:
    """Extra jets (ISR, pileup): Poisson multiplicity, falling pT; flattened with counts."""
    counts = rng.poisson(mean_count, n)
    total = counts.sum()
    pt = 20 + rng.exponential(mean_pt, total)
    jets = Particles.from_pt_eta_phi_m(
        pt,
        rng.uniform(-4.7, 4.7, total),
        rng.uniform(-np.pi, np.pi, total),
        pt * rng.uniform(0.05, 0.15, total),
    )
    return jets, counts, rng.random(total) < b_fraction


def _fake_tau_from_jet(
    rng: np.random.Generator, ev: Event, recoil: Particles | None, mean_pt: float
) -> None:
    """A jet reconstructed as tau_h: back to back with ``recoil`` when given."""
    n = ev.n
    pt = 18 + rng.exponential(mean_pt, n)
    phi = (
        (recoil.phi + np.pi + rng.normal(0, 0.6, n))
        if recoil is not None
        else rng.uniform(-np.pi, np.pi, n)
    )
    dm = rng.choice(FAKE_DECAY_MODES, n, p=FAKE_DECAY_MODE_FRACTIONS)
    mass = np.vectorize(VISIBLE_MASS.get)(dm) * rng.normal(1.0, 0.15, n)
    ev.tau = Particles.from_pt_eta_phi_m(pt, rng.normal(0, 1.2, n), phi, np.abs(mass))
    ev.tau_kind[:] = "jet"
    ev.tau_dm = dm
    ev.tau_charge = rng.choice([-1, 1], n).astype(np.int32)


def _physics(rng: np.random.Generator, process: str, n: int, tune: str) -> Event:
    """Generator-level objects of ``n`` events of ``process``."""
    hard = 1.15 if tune == "alternative" else 1.0
    ev = Event(n)
    extra_jets, mean_jet_pt = 1.0, 20.0
    if process in ("ggH", "qqH", "ZTT"):
        boson = _resonance(
            rng,
            n,
            "H" if process != "ZTT" else "Z",
            hard * {"ggH": 35.0, "qqH": 45.0, "ZTT": 15.0}[process],
        )
        _ditau(rng, boson, ev)
        ev.boson_pt = boson.pt
        extra_jets = {"ggH": 1.3, "qqH": 0.8, "ZTT": 0.7}[process] * hard
        if process == "qqH":
            side = rng.choice([-1.0, 1.0], n)
            for sign in (1.0, -1.0):
                pt = 30 + rng.exponential(45, n)
                eta = sign * side * rng.uniform(1.5, 4.5, n)
                ev.jets.append(
                    (
                        Particles.from_pt_eta_phi_m(
                            pt, eta, rng.uniform(-np.pi, np.pi, n), 0.1 * pt
                        ),
                        np.zeros(n, bool),
                    )
                )
    elif process == "ZL":
        boson = _resonance(rng, n, "Z", 12.0 * hard)
        ev.muon, ev.tau = two_body_decay(rng, boson, MASS["mu"], MASS["mu"])
        ev.tau = Particles.from_pt_eta_phi_m(
            ev.tau.pt * rng.normal(1.0, 0.03, n), ev.tau.eta, ev.tau.phi, np.full(n, 0.14)
        )
        ev.tau_kind[:] = "muon"
        ev.tau_dm = rng.choice([0, 1], n, p=[0.8, 0.2])
        ev.boson_pt = boson.pt
        extra_jets = 0.7
    elif process == "W":
        boson = _resonance(rng, n, "W", 20.0 * hard)
        ev.muon, nu = two_body_decay(rng, boson, MASS["mu"], 0.0)
        ev.neutrinos = nu.p4[1:3]
        _fake_tau_from_jet(rng, ev, boson, 25.0)
        ev.muon_charge = rng.choice([-1, 1], n).astype(np.int32)
        ev.boson_pt = boson.pt
        extra_jets = 1.1 * hard
    elif process == "TT":
        system = _from_pt_y(
            rng,
            rng.gamma(1.5, hard * 40 / 1.5, n),
            rng.normal(0, 1.0, n),
            2 * MASS["t"] + 30 + rng.exponential(120, n),
        )
        top1, top2 = two_body_decay(rng, system, MASS["t"], MASS["t"])
        b1, w1 = two_body_decay(rng, top1, MASS["b"], MASS["W"])
        b2, w2 = two_body_decay(rng, top2, MASS["b"], MASS["W"])
        ev.muon, nu1 = two_body_decay(rng, w1, MASS["mu"], 0.0)
        tau, nu2 = two_body_decay(rng, w2, MASS["tau"], 0.0)
        ev.tau, nu_tau, ev.tau_dm = _tau_decay(rng, tau, hadronic=True)
        ev.neutrinos = nu1.p4[1:3] + nu2.p4[1:3] + nu_tau
        sign = rng.choice([-1, 1], n)
        ev.muon_charge, ev.tau_charge = sign.astype(np.int32), -sign.astype(np.int32)
        ev.jets += [(b1, np.ones(n, bool)), (b2, np.ones(n, bool))]
        ev.boson_pt = system.pt
        extra_jets, mean_jet_pt = 1.2 * hard, 30.0
    elif process == "QCD":
        pt = 15 + rng.exponential(12, n)
        ev.muon = Particles.from_pt_eta_phi_m(
            pt, rng.normal(0, 1.2, n), rng.uniform(-np.pi, np.pi, n), np.full(n, MASS["mu"])
        )
        ev.muon_flav[:] = UNMATCHED
        ev.muon_iso_scale = 0.35
        ev.muon_charge = rng.choice([-1, 1], n).astype(np.int32)
        _fake_tau_from_jet(rng, ev, ev.muon, 18.0)
        extra_jets = 1.3
    else:
        raise AnalysisError(
            f"toydata: unknown process {process!r}; "
            "the generator knows ggH, qqH, ZTT, ZL, TT, W, QCD"
        )
    extra, counts, is_b = _jets(rng, n, extra_jets, mean_jet_pt * hard)
    ev.jets.append((extra, is_b, counts))  # type: ignore[arg-type]
    return ev


def _tau_id(rng: np.random.Generator, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepTau-like cumulative bitmasks (VSjet, VSmu) for genuine and faked tau_h."""
    n = len(kind)
    vs_jet = np.where(kind == "jet", rng.beta(1.0, 4.0, n), rng.beta(6.0, 1.3, n))
    vs_mu = np.where(kind == "muon", rng.beta(1.0, 3.0, n), rng.beta(9.0, 1.0, n))
    return _bitmask(vs_jet, VSJET_THRESHOLDS), _bitmask(vs_mu, VSMU_THRESHOLDS)


def _bitmask(score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    passed = score[:, None] > thresholds[None, :]
    return (passed * (1 << np.arange(len(thresholds)))).sum(axis=1).astype(np.uint8)


def _detector(rng: np.random.Generator, ev: Event, process: str, tune: str) -> dict[str, Any]:
    """Reconstructed objects: smearing, IDs, jets, MET; returns NanoAOD-like columns."""
    n = ev.n
    mu = ev.muon
    mu_pt = mu.pt * rng.normal(1.0, 0.01, n)
    tau_scale = np.where(ev.tau_kind == "tau", rng.normal(1.0, 0.03, n), 1.0)
    tau = Particles.from_pt_eta_phi_m(ev.tau.pt * tau_scale, ev.tau.eta, ev.tau.phi, ev.tau.mass)
    vs_jet, vs_mu = _tau_id(rng, ev.tau_kind)
    flav = np.select([ev.tau_kind == "tau", ev.tau_kind == "muon"], [GENUINE_TAU, 2], UNMATCHED)
    jet_p4, jet_b, jet_counts = _collect_jets(ev)
    jet_pt = jet_p4.pt * rng.normal(1.0, 0.08, len(jet_b))
    jet_b = jet_b.astype(bool)
    btag = np.where(jet_b, rng.beta(6.0, 1.2, len(jet_b)), rng.beta(0.6, 8.0, len(jet_b)))
    jet_id = np.where(rng.random(len(jet_b)) < 0.97, 6, rng.choice([0, 2], len(jet_b))).astype(
        np.int32
    )
    # MET: neutrinos, minus the mismeasurement of visible objects, plus resolution
    visible_dx = (mu_pt - mu.pt) * np.cos(mu.phi) + (tau.pt - ev.tau.pt) * np.cos(tau.phi)
    visible_dy = (mu_pt - mu.pt) * np.sin(mu.phi) + (tau.pt - ev.tau.pt) * np.sin(tau.phi)
    jet_dpt = jet_pt - jet_p4.pt
    event_index = np.repeat(np.arange(n), jet_counts)
    jet_dx = np.bincount(event_index, jet_dpt * np.cos(jet_p4.phi), minlength=n)
    jet_dy = np.bincount(event_index, jet_dpt * np.sin(jet_p4.phi), minlength=n)
    met_x = ev.neutrinos[0] - visible_dx - jet_dx + rng.normal(0, 12.0, n)
    met_y = ev.neutrinos[1] - visible_dy - jet_dy + rng.normal(0, 12.0, n)
    iso = rng.exponential(ev.muon_iso_scale, n)
    pileup = rng.poisson(32, n)
    return {
        "muon": {
            "pt": mu_pt,
            "eta": mu.eta,
            "phi": mu.phi,
            "mass": np.full(n, MASS["mu"]),
            "charge": ev.muon_charge,
            "pfRelIso04_all": iso,
            "tightId": rng.random(n) < (0.9 if process == "QCD" else 0.98),
            "genPartFlav": ev.muon_flav,
        },
        "tau": {
            "pt": tau.pt,
            "eta": tau.eta,
            "phi": tau.phi,
            "mass": tau.mass,
            "charge": ev.tau_charge,
            "decayMode": ev.tau_dm,
            "idDeepTau2017v2p1VSjet": vs_jet,
            "idDeepTau2017v2p1VSmu": vs_mu,
            "genPartFlav": flav,
        },
        "jet": {
            "pt": jet_pt,
            "eta": jet_p4.eta,
            "phi": jet_p4.phi,
            "mass": jet_p4.mass * jet_pt / np.maximum(jet_p4.pt, 1e-9),
            "btagDeepFlavB": btag,
            "jetId": jet_id,
        },
        "jet_counts": jet_counts,
        "met": (met_x, met_y),
        "met_uncl": (rng.normal(0, 3.0, n), rng.normal(0, 3.0, n)),
        "trigger": (mu_pt > 24) & (iso < 0.15) & (rng.random(n) < 0.92),
        "pileup": pileup,
        "boson_pt": ev.boson_pt,
        "n_extra_jets": jet_counts,
    }


def _collect_jets(ev: Event) -> tuple[Particles, np.ndarray, np.ndarray]:
    """All jets of the events, flattened event by event, with per-event counts."""
    n = ev.n
    per_object = [(jets, is_b, np.ones(n, dtype=np.int64)) for jets, is_b in ev.jets[:-1]]
    extra, extra_b, extra_counts = ev.jets[-1]  # type: ignore[misc]
    blocks = [*per_object, (extra, extra_b, extra_counts)]
    counts = sum(block[2] for block in blocks)
    event_of = [np.repeat(np.arange(n), block[2]) for block in blocks]
    order = np.argsort(np.concatenate(event_of), kind="stable")
    p4 = np.concatenate([block[0].p4 for block in blocks], axis=1)[:, order]
    is_b = np.concatenate([block[1] for block in blocks])[order]
    return Particles(p4), is_b, counts


def _apply_truth_shifts(
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
    dpt = np.where(old_jet > 15, jet["pt"] - old_jet, 0.0)
    met_x = met_x - np.bincount(event_index, dpt * np.cos(jet["phi"]), minlength=len(old_tau))
    met_y = met_y - np.bincount(event_index, dpt * np.sin(jet["phi"]), minlength=len(old_tau))
    reco["met"] = (met_x, met_y)


def _apply_tau_id_sf(
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


def _weights(rng: np.random.Generator, reco: dict[str, Any], process: str) -> dict[str, np.ndarray]:
    """genWeight (with negative ones), pileup weights, and scale and parton-shower weights."""
    n = len(reco["pileup"])
    negative = rng.random(n) < NEGATIVE_WEIGHT_FRACTION.get(process, 0.0)
    pileup = reco["pileup"] - 32.0
    # scale variations grow with jet activity and boson pT, so they change acceptance and shapes
    activity = 0.04 + 0.02 * reco["n_extra_jets"] + 0.0004 * reco["boson_pt"]
    log_r, log_f = np.meshgrid(np.log2([0.5, 1.0, 2.0]), np.log2([0.5, 1.0, 2.0]), indexing="ij")
    scale = 1 - activity[:, None] * (1.0 * log_r.ravel()[None, :] + 0.5 * log_f.ravel()[None, :])
    isr = 0.06 * reco["n_extra_jets"] + 0.02
    fsr = 0.03 + 0.0002 * reco["boson_pt"]
    return {
        "genWeight": np.where(negative, -1.0, 1.0).astype(np.float32),
        "puWeight": np.clip(1 + 0.02 * pileup, 0.1, 3.0).astype(np.float32),
        "puWeightUp": np.clip(1 + 0.026 * pileup, 0.1, 3.0).astype(np.float32),
        "puWeightDown": np.clip(1 + 0.014 * pileup, 0.1, 3.0).astype(np.float32),
        "LHEScaleWeight": scale.astype(np.float32),
        "PSWeight": np.stack([1 + isr, 1 + fsr, 1 - isr, 1 - fsr], axis=1).astype(np.float32),
    }


def _columns(reco: dict[str, Any], weights: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """NanoAOD branches (jagged collections as awkward records) for uproot."""
    n = len(reco["pileup"])
    one = np.ones(n, dtype=np.int64)
    muon = {k: v for k, v in reco["muon"].items() if weights is not None or k != "genPartFlav"}
    tau = {k: v for k, v in reco["tau"].items() if weights is not None or k != "genPartFlav"}
    jets = ak.unflatten(
        ak.zip({k: np.asarray(v) for k, v in reco["jet"].items()}), reco["jet_counts"]
    )
    jets = jets[ak.argsort(jets.pt, axis=1, ascending=False)]
    dtypes = {
        "charge": np.int32,
        "decayMode": np.int32,
        "jetId": np.int32,
        "tightId": bool,
        "genPartFlav": np.uint8,
        "idDeepTau2017v2p1VSjet": np.uint8,
        "idDeepTau2017v2p1VSmu": np.uint8,
    }

    def record(fields: dict[str, np.ndarray], counts: np.ndarray) -> ak.Array:
        return ak.unflatten(
            ak.zip({k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in fields.items()}),
            counts,
        )

    met_x, met_y = reco["met"]
    columns: dict[str, Any] = {
        "Muon": record(muon, one),
        "Tau": record(tau, one),
        "Jet": ak.zip(
            {f: ak.values_astype(jets[f], dtypes.get(f, np.float32)) for f in jets.fields}
        ),
        "MET_pt": np.hypot(met_x, met_y).astype(np.float32),
        "MET_phi": np.arctan2(met_y, met_x).astype(np.float32),
        "MET_MetUnclustEnUpDeltaX": reco["met_uncl"][0].astype(np.float32),
        "MET_MetUnclustEnUpDeltaY": reco["met_uncl"][1].astype(np.float32),
        "HLT_IsoMu24": reco["trigger"],
        "PV_npvs": np.maximum(reco["pileup"] * 0.7, 1).astype(np.int32),
    }
    if weights is not None:
        columns["Pileup_nTrueInt"] = reco["pileup"].astype(np.float32)
        for name in ("genWeight", "puWeight", "puWeightUp", "puWeightDown"):
            columns[name] = weights[name]
        # jagged like NanoAOD (counters nLHEScaleWeight, nPSWeight), not fixed-size arrays
        for name in ("LHEScaleWeight", "PSWeight"):
            values = weights[name]
            columns[name] = ak.unflatten(values.ravel(), np.full(n, values.shape[1]))
    return columns


def _generate(rng: np.random.Generator, process: str, n: int, tune: str) -> dict[str, Any]:
    """``n`` events of ``process`` inside the generator-level phase space (see PHASE_SPACE)."""
    batches, accepted = [], 0
    while accepted < n:
        reco = _detector(
            rng, _physics(rng, process, max(2 * (n - accepted), 1000), tune), process, tune
        )
        keep = _in_phase_space(reco)
        batches.append(_subset(reco, keep))
        accepted += int(keep.sum())
    return _subset(_concatenate(batches), np.arange(n))


def _in_phase_space(reco: Mapping[str, Any]) -> np.ndarray:
    """The generator filter: a muon and a tau_h candidate roughly inside the detector acceptance."""
    muon, tau = reco["muon"], reco["tau"]
    return (
        (muon["pt"] > PHASE_SPACE["muon_pt"])
        & (np.abs(muon["eta"]) < PHASE_SPACE["eta"])
        & (tau["pt"] > PHASE_SPACE["tau_pt"])
        & (np.abs(tau["eta"]) < PHASE_SPACE["eta"])
    )


def _subset(reco: Mapping[str, Any], selection: np.ndarray) -> dict[str, Any]:
    """Events picked by a boolean mask or an index array, jets (flat, with counts) included."""
    index = np.flatnonzero(selection) if selection.dtype == bool else selection
    jet_start = np.concatenate([[0], np.cumsum(reco["jet_counts"])])
    jet_index = np.concatenate(
        [np.arange(jet_start[i], jet_start[i + 1]) for i in index] or [np.zeros(0, dtype=np.int64)]
    )
    out: dict[str, Any] = {}
    for key, value in reco.items():
        if key == "jet":
            out[key] = {name: values[jet_index] for name, values in value.items()}
        elif isinstance(value, dict):
            out[key] = {name: values[index] for name, values in value.items()}
        elif isinstance(value, tuple):
            out[key] = tuple(values[index] for values in value)
        else:
            out[key] = value[index]
    return out


def _concatenate(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = batches[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = {name: np.concatenate([b[key][name] for b in batches]) for name in value}
        elif isinstance(value, tuple):
            out[key] = tuple(
                np.concatenate([b[key][i] for b in batches]) for i in range(len(value))
            )
        else:
            out[key] = np.concatenate([b[key] for b in batches])
    return out


def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent, platform-stable stream per (seed, name...): never Python's hash()."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, *(zlib.crc32(x.encode()) for x in names)])
    )


def _simulation_chunks(name: str, sample: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
    toy = settings["toydata"]
    total = max(1, round(sample["toy"]["events"] * toy["scale"]))
    offset = zlib.crc32(name.encode()) % 1000 * 10_000_000
    for start in range(0, total, CHUNK):
        n = min(CHUNK, total - start)
        rng = _rng(toy["seed"], name, str(start))
        reco = _generate(rng, sample["process"], n, sample["toy"].get("tune", "nominal"))
        columns = _columns(reco, _weights(rng, reco, sample["process"]))
        columns["run"] = np.ones(n, dtype=np.uint32)
        columns["luminosityBlock"] = (1 + (start + np.arange(n)) // 1000).astype(np.uint32)
        columns["event"] = (offset + start + 1 + np.arange(n)).astype(np.uint64)
        yield columns


def _data_chunks(settings: Mapping[str, Any]) -> Any:
    """Pseudo-data: every nominal simulated process at Poisson(mu * xsec * lumi) events."""
    toy, samples = settings["toydata"], settings["samples"]
    truth = toy.get("truth") or {}
    mu = truth.get("mu") or {}
    nuisances = truth.get("nuisances") or {}
    produced = 0
    for name, sample in samples.items():
        if "toy" not in sample or not has_shape_variations(sample):
            continue
        rng = _rng(toy["seed"], "data", name)
        expected = mu.get(sample["process"], 1.0) * sample["xsec"] * settings["lumi"]
        total = int(rng.poisson(expected))
        for start in range(0, total, CHUNK):
            n = min(CHUNK, total - start)
            reco = _generate(rng, sample["process"], n, "nominal")
            _apply_truth_shifts(reco, nuisances, settings["variations"])
            _apply_tau_id_sf(rng, reco, settings.get("tau_id_sf"))
            columns = _columns(reco, None)
            order = rng.permutation(n)
            columns = {key: value[order] for key, value in columns.items()}
            columns["run"] = rng.choice(DATA_RUNS, n).astype(np.uint32)
            columns["luminosityBlock"] = rng.integers(1, 2000, n).astype(np.uint32)
            columns["event"] = (produced + 1 + np.arange(n)).astype(np.uint64) * 7 + np.uint64(3)
            produced += n
            yield columns


def _nanoaod_name(collection: str, field: str) -> str:
    """NanoAOD branch naming: ``Muon_pt`` (with counter ``nMuon``)."""
    return f"{collection}_{field}"


def _branch_types(columns: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: values.type if isinstance(values, ak.Array) else values.dtype
        for name, values in columns.items()
    }


def generate_sample(
    sample: str, settings: Mapping[str, Any], output: str | os.PathLike[str]
) -> None:
    """Generate one toy sample and write it as a NanoAOD-like ROOT file.

    Args:
        sample: name of a sample with a ``toy`` block in ``settings["samples"]``.
        settings: ``samples`` (the samples file's mapping), ``toydata``, ``lumi``, ``variations``
            and ``tau_id_sf`` (a correctionlib file and correction, or None) from the config.
        output: the ROOT file to write (atomically).
    """
    spec = settings["samples"].get(sample)
    if spec is None or "toy" not in spec:
        raise AnalysisError(
            f"toydata: sample '{sample}' has no `toy` block in the samples file; "
            "add one or list its `files`"
        )
    simulation = spec["type"] == "mc"
    chunks = _simulation_chunks(sample, spec, settings) if simulation else _data_chunks(settings)
    sumw = count = 0.0
    tree = None
    with atomic_path(output) as tmp, uproot.recreate(tmp) as fout:
        for columns in chunks:
            if tree is None:
                tree = fout.mktree("Events", _branch_types(columns), field_name=_nanoaod_name)
            tree.extend(columns)
            if simulation:
                sumw += float(np.sum(columns["genWeight"], dtype=np.float64))
                count += len(columns["genWeight"])
        if tree is None:
            raise AnalysisError(
                f"toydata: sample '{sample}' would have no events; "
                "raise its event count or the luminosity"
            )
        runs = {"run": np.array([1], dtype=np.uint32)}
        if simulation:
            runs.update(
                genEventCount=np.array([count], dtype=np.int64),
                genEventSumw=np.array([sumw]),
                genEventSumw2=np.array([count]),
            )
        fout["Runs"] = runs


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate one toy NanoAOD-like sample.")
    parser.add_argument("--sample", required=True)
    parser.add_argument(
        "--settings", required=True, help="samples, toydata, lumi, variations, tau_id_sf as JSON"
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    generate_sample(args.sample, json.loads(args.settings), Path(args.output))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
