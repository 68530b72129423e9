"""Generator-level physics of the toy dataset, vectorised with numpy.

A boson (H, Z, W) or a top pair is produced with a transverse-momentum spectrum and a rapidity,
decays isotropically in its rest frame, taus decay into visible products and neutrinos in the
collinear approximation, and the neutrinos make the missing transverse momentum. So the visible
mass of H->tautau peaks well below 125 GeV, the collinear mass near it, Z->tautau near 91, and
W+jets has large transverse masses: a classifier has something real to learn.

Every function draws from the generator it is given, in a fixed order: the toy files are
reproducible byte for byte from the seed, so a change of that order changes every file.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from analysis.core.errors import AnalysisError
from analysis.selection.kinematics import momentum

MASS = {"H": 125.0, "Z": 91.19, "W": 80.38, "t": 172.5, "tau": 1.777, "mu": 0.1057, "b": 4.8}
WIDTH = {"H": 0.004, "Z": 2.50, "W": 2.09}
#: Visible mass and relative frequency of the tau_h decay modes (HPS decay modes).
DECAY_MODES = np.array([0, 1, 10, 11])
DECAY_MODE_FRACTIONS = np.array([0.25, 0.50, 0.20, 0.05])
FAKE_DECAY_MODES = np.array([0, 1, 10, 11, 5, 6])
FAKE_DECAY_MODE_FRACTIONS = np.array([0.30, 0.30, 0.20, 0.10, 0.05, 0.05])
VISIBLE_MASS = {0: 0.14, 1: 0.77, 10: 1.1, 11: 1.3, 5: 0.9, 6: 1.0}
#: Generator flags of the muon (Muon_genPartFlav).
PROMPT_MUON, MUON_FROM_TAU, UNMATCHED = 1, 15, 0
#: Processes with a boson -> tau tau: the boson, its mean pT (GeV), the mean number of extra jets.
DITAU_PROCESSES = {"ggH": ("H", 35.0, 1.3), "qqH": ("H", 45.0, 0.8), "ZTT": ("Z", 15.0, 0.7)}
#: Mean pT (GeV) of the extra jets, unless a process sets its own.
MEAN_JET_PT = 20.0


class Particles:
    """Four-vectors (E, px, py, pz) of one object per event, as arrays of shape (4, n)."""

    def __init__(self, p4: np.ndarray) -> None:
        self.p4 = p4

    @classmethod
    def from_pt_eta_phi_m(
        cls, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, m: np.ndarray
    ) -> Particles:
        px, py, pz, energy = momentum(pt, eta, phi, m)
        return cls(np.stack([energy, px, py, pz]))

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
        # E^2 - (px^2 + py^2 + pz^2): rounds differently from kinematics.invariant_mass, whose
        # order the skims depend on; each stays as it is so that neither output changes
        return np.sqrt(np.maximum(self.p4[0] ** 2 - (self.p4[1:] ** 2).sum(axis=0), 0.0))

    def __add__(self, other: Particles) -> Particles:
        return Particles(self.p4 + other.p4)

    def scaled(self, factor: np.ndarray | float) -> Particles:
        return Particles(self.p4 * factor)


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
        #: One jet per event from the hard process: (jets, is_b).
        self.jets: list[tuple[Particles, np.ndarray]] = []
        #: Extra jets (ISR, pileup), flattened: (jets, is_b, counts per event).
        self.extra_jets: tuple[Particles, np.ndarray, np.ndarray] | None = None
        self.boson_pt = np.zeros(n)


def generate_physics(rng: np.random.Generator, process: str, n: int, tune: str) -> Event:
    """Generator-level objects of ``n`` events of ``process`` (``tune`` ``alternative``: harder)."""
    generator = PROCESSES.get(process)
    if generator is None:
        raise AnalysisError(
            f"toydata: unknown process {process!r}; "
            "the generator knows ggH, qqH, ZTT, ZL, TT, W, QCD"
        )
    hard = 1.15 if tune == "alternative" else 1.0
    ev = Event(n)
    extra_jets, mean_jet_pt = generator(rng, ev, hard)
    ev.extra_jets = _jets(rng, n, extra_jets, mean_jet_pt * hard)
    return ev


# -- processes: each fills an Event and returns (mean number, mean pT) of its extra jets ---------


def _boson_to_ditau(
    process: str, rng: np.random.Generator, ev: Event, hard: float
) -> tuple[float, float]:
    """ggH, qqH (with two forward jets) and ZTT: a boson -> tau tau -> mu + tau_h."""
    boson_name, mean_pt, extra_jets = DITAU_PROCESSES[process]
    boson = _resonance(rng, ev.n, boson_name, hard * mean_pt)
    _ditau(rng, boson, ev)
    ev.boson_pt = boson.pt
    if process == "qqH":
        _vbf_jets(rng, ev)
    return extra_jets * hard, MEAN_JET_PT


def _vbf_jets(rng: np.random.Generator, ev: Event) -> None:
    """Two forward jets in opposite hemispheres (vector-boson fusion)."""
    n = ev.n
    side = rng.choice([-1.0, 1.0], n)
    for sign in (1.0, -1.0):
        pt = 30 + rng.exponential(45, n)
        eta = sign * side * rng.uniform(1.5, 4.5, n)
        jets = Particles.from_pt_eta_phi_m(pt, eta, rng.uniform(-np.pi, np.pi, n), 0.1 * pt)
        ev.jets.append((jets, np.zeros(n, bool)))


def _z_to_muons(rng: np.random.Generator, ev: Event, hard: float) -> tuple[float, float]:
    """ZL: Z -> mu mu, one muon reconstructed as tau_h."""
    n = ev.n
    boson = _resonance(rng, n, "Z", 12.0 * hard)
    ev.muon, ev.tau = two_body_decay(rng, boson, MASS["mu"], MASS["mu"])
    ev.tau = Particles.from_pt_eta_phi_m(
        ev.tau.pt * rng.normal(1.0, 0.03, n), ev.tau.eta, ev.tau.phi, np.full(n, 0.14)
    )
    ev.tau_kind[:] = "muon"
    ev.tau_dm = rng.choice([0, 1], n, p=[0.8, 0.2])
    ev.boson_pt = boson.pt
    return 0.7, MEAN_JET_PT


def _w_plus_jets(rng: np.random.Generator, ev: Event, hard: float) -> tuple[float, float]:
    """W: W -> mu nu with a jet reconstructed as tau_h, recoiling against the W."""
    n = ev.n
    boson = _resonance(rng, n, "W", 20.0 * hard)
    ev.muon, nu = two_body_decay(rng, boson, MASS["mu"], 0.0)
    ev.neutrinos = nu.p4[1:3]
    _fake_tau_from_jet(rng, ev, boson, 25.0)
    ev.muon_charge = rng.choice([-1, 1], n).astype(np.int32)
    ev.boson_pt = boson.pt
    return 1.1 * hard, MEAN_JET_PT


def _top_pair(rng: np.random.Generator, ev: Event, hard: float) -> tuple[float, float]:
    """TT: t tbar -> b W b W, one W -> mu nu and the other W -> tau nu with tau -> tau_h."""
    n = ev.n
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
    return 1.2 * hard, 30.0


def _multijet(rng: np.random.Generator, ev: Event, hard: float) -> tuple[float, float]:
    """QCD: a non-isolated muon from a jet and a jet reconstructed as tau_h, back to back."""
    n = ev.n
    pt = 15 + rng.exponential(12, n)
    ev.muon = Particles.from_pt_eta_phi_m(
        pt, rng.normal(0, 1.2, n), rng.uniform(-np.pi, np.pi, n), np.full(n, MASS["mu"])
    )
    ev.muon_flav[:] = UNMATCHED
    ev.muon_iso_scale = 0.35
    ev.muon_charge = rng.choice([-1, 1], n).astype(np.int32)
    _fake_tau_from_jet(rng, ev, ev.muon, 18.0)
    return 1.3, MEAN_JET_PT


#: The generator of each process: fills an Event, returns (mean count, mean pT) of extra jets.
PROCESSES: dict[str, Callable[[np.random.Generator, Event, float], tuple[float, float]]] = {
    **{process: partial(_boson_to_ditau, process) for process in DITAU_PROCESSES},
    "ZL": _z_to_muons,
    "W": _w_plus_jets,
    "TT": _top_pair,
    "QCD": _multijet,
}


# -- building blocks ----------------------------------------------------------------------------


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
    p3 = p4[1:] + beta * ((gamma - 1) * bp / b2 + gamma * p4[0])
    return np.vstack([energy, p3])


def _leptonic_fraction(rng: np.random.Generator, n: int) -> np.ndarray:
    """Visible momentum fraction of tau -> mu nu nu (unpolarised spectrum, by rejection)."""
    out = np.empty(0)
    while len(out) < n:
        x = rng.random(2 * n)
        keep = rng.random(2 * n) * 5 / 3 < (5 - 9 * x**2 + 4 * x**3) / 3
        out = np.concatenate([out, x[keep]])
    return np.maximum(out[:n], 0.02)


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
    """Extra jets (ISR, pileup): Poisson multiplicity, falling pT; flattened, with counts."""
    counts = rng.poisson(mean_count, n)
    total = counts.sum()
    pt = 20 + rng.exponential(mean_pt, total)
    jets = Particles.from_pt_eta_phi_m(
        pt,
        rng.uniform(-4.7, 4.7, total),
        rng.uniform(-np.pi, np.pi, total),
        pt * rng.uniform(0.05, 0.15, total),
    )
    return jets, rng.random(total) < b_fraction, counts


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
