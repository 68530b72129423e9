"""The 2D Gaussian toy of Wunsch et al. (2021): samples, networks, losses and templates.

Signal ~ N((0, 0), 1), background ~ N((1, 1), 1) with unit uncorrelated covariances; one
background systematic shifting x2 by +-1 (shifted copies of the background events); normalised to
50 signal and 1000 background events. Network: one hidden layer of 100 ReLU nodes, sigmoid output;
8 bins of the network output.

Used by the demonstration ``bench/uncertainty_aware.py`` and by the tests of the uncertainty-aware
loss; the pyhf model of its templates (``normfactor`` + ``histosys`` code0) is the reference the
module's own likelihood is checked against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyhf
import torch
from scipy.special import ndtr
from torch import nn

from analysis.ml.asimov_likelihood import asimov_fisher, poi_nuisance_correlation, poi_variance
from analysis.ml.differentiable_histogram import Binning, EventSet
from analysis.ml.early_stopping import LoopHistory, LoopSettings, train_with_early_stopping
from analysis.ml.uncertainty_aware import uncertainty_aware_loss

SIGNAL_MEAN = (0.0, 0.0)
BACKGROUND_MEAN = (1.0, 1.0)
SHIFT = 1.0  # the systematic moves the background in x2 by +-SHIFT
SIGNAL_YIELD = 50.0
BACKGROUND_YIELD = 1000.0
N_BINS = 8

#: Event sets of a sample: inputs of each process and variation, and the per-event weights.
Sample = dict[str, torch.Tensor]
#: Binned contents by name: ``signal``, ``background``, ``up``, ``down``.
Templates = dict[str, np.ndarray]


def make_sample(n_events: int, generator: torch.Generator) -> Sample:
    """Signal, nominal background and its up/down shifted copies, with yield-normalised weights."""
    signal = torch.randn(n_events, 2, generator=generator, dtype=torch.float64)
    signal += torch.tensor(SIGNAL_MEAN, dtype=torch.float64)
    background = torch.randn(n_events, 2, generator=generator, dtype=torch.float64)
    background += torch.tensor(BACKGROUND_MEAN, dtype=torch.float64)
    shift = torch.tensor([0.0, SHIFT], dtype=torch.float64)
    return {
        "signal": signal.float(),
        "background": background.float(),
        "up": (background + shift).float(),
        "down": (background - shift).float(),
        "w_signal": torch.full((n_events,), SIGNAL_YIELD / n_events),
        "w_background": torch.full((n_events,), BACKGROUND_YIELD / n_events),
    }


def build_network(seed: int) -> nn.Sequential:
    """One hidden layer of 100 ReLU nodes and a sigmoid output, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 1), nn.Sigmoid())


def _score(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return network(inputs).squeeze(1)


def ua_loss(network: nn.Module, sample: Sample, systematic: bool) -> torch.Tensor:
    """Uncertainty-aware loss of ``network`` on ``sample`` (process 0 signal, 1 background)."""
    n_sig, n_bkg = len(sample["signal"]), len(sample["background"])
    process = torch.cat([torch.zeros(n_sig, dtype=torch.long), torch.ones(n_bkg, dtype=torch.long)])
    weights = torch.cat([sample["w_signal"], sample["w_background"]])
    signal_scores = _score(network, sample["signal"])
    nominal = EventSet(
        torch.cat([signal_scores, _score(network, sample["background"])]), weights, process
    )
    variations = {}
    if systematic:
        # The systematic affects only the background: the signal enters with its nominal events.
        variations["shift"] = (
            EventSet(torch.cat([signal_scores, _score(network, sample["up"])]), weights, process),
            EventSet(torch.cat([signal_scores, _score(network, sample["down"])]), weights, process),
        )
    return uncertainty_aware_loss(nominal, variations, [0], 2, Binning(N_BINS))


def ce_loss(network: nn.Module, sample: Sample) -> torch.Tensor:
    """Binary cross entropy with both classes weighted to the same total."""
    scores = torch.cat([_score(network, sample["signal"]), _score(network, sample["background"])])
    target = torch.cat([torch.ones(len(sample["signal"])), torch.zeros(len(sample["background"]))])
    weights = torch.cat(
        [
            torch.full((len(sample["signal"]),), 0.5 / len(sample["signal"])),
            torch.full((len(sample["background"]),), 0.5 / len(sample["background"])),
        ]
    )
    return nn.functional.binary_cross_entropy(scores, target, weight=weights, reduction="sum")


def train(
    kind: str, train_sample: Sample, val_sample: Sample, settings: LoopSettings, seed: int
) -> tuple[nn.Module, LoopHistory]:
    """Train one network: ``cross_entropy``, ``ua_stat`` or ``ua_syst``.

    The cross entropy has no pre-training; the uncertainty-aware trainings pre-train on the
    statistical part of the loss.
    """
    network = build_network(seed)
    if kind == "cross_entropy":
        history = train_with_early_stopping(
            network,
            lambda: ce_loss(network, train_sample),
            lambda: ce_loss(network, train_sample),
            lambda: ce_loss(network, val_sample),
            LoopSettings(0, settings.max_steps, settings.patience, settings.learning_rate),
        )
    else:
        systematic = kind == "ua_syst"
        history = train_with_early_stopping(
            network,
            lambda: ua_loss(network, train_sample, False),
            lambda: ua_loss(network, train_sample, systematic),
            lambda: ua_loss(network, val_sample, systematic),
            settings,
        )
    return network, history


def network_templates(network: nn.Module, sample: Sample) -> Templates:
    """8-bin templates of the network output on ``sample`` (exact counts)."""
    edges = Binning(N_BINS).edges()
    weights = {"signal": "w_signal", "background": "w_background"}
    hists = {}
    with torch.no_grad():
        for name in ("signal", "background", "up", "down"):
            scores = _score(network, sample[name]).double().numpy()
            weight = sample[weights.get(name, "w_background")].double().numpy()
            hists[name] = np.histogram(np.clip(scores, 0, 1), edges, weights=weight)[0]
    return hists


def reference_templates(n_bins: int = 50, low: float = -4.5, high: float = 5.5) -> Templates:
    """Fine 2D templates in (x1, x2) from the Gaussian CDFs; the outer bins take the overflow."""
    edges = np.linspace(low, high, n_bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf

    def binned(mean_x1: float, mean_x2: float) -> np.ndarray:
        p1 = np.diff(ndtr(edges - mean_x1))
        p2 = np.diff(ndtr(edges - mean_x2))
        return np.outer(p1, p2).ravel()

    mx, my = BACKGROUND_MEAN
    return {
        "signal": SIGNAL_YIELD * binned(*SIGNAL_MEAN),
        "background": BACKGROUND_YIELD * binned(mx, my),
        "up": BACKGROUND_YIELD * binned(mx, my + SHIFT),
        "down": BACKGROUND_YIELD * binned(mx, my - SHIFT),
    }


def pyhf_model(templates: Templates, systematic: bool) -> pyhf.pdf.Model:
    """A one-channel pyhf model: signal with normfactor mu, background with an optional histosys."""
    modifiers = []
    if systematic:
        varied = {"hi_data": templates["up"].tolist(), "lo_data": templates["down"].tolist()}
        modifiers.append({"name": "shift", "type": "histosys", "data": varied})
    mu = [{"name": "mu", "type": "normfactor", "data": None}]
    samples = [
        {"name": "signal", "data": templates["signal"].tolist(), "modifiers": mu},
        {"name": "background", "data": templates["background"].tolist(), "modifiers": modifiers},
    ]
    # pyhf's default histosys interpolation is code4p (polynomial); code0 is the piecewise-linear
    # interpolation of the issue and of the training loss.
    settings = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code0"}}
    spec = {"channels": [{"name": "nn", "samples": samples}]}
    return pyhf.Model(spec, poi_name="mu", validate=False, modifier_settings=settings)


def stacked_templates(
    templates: Templates, systematic: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nominal ``(2, B)`` and up/down ``(S, 2, B)`` arrays (signal, background) of the likelihood.

    The systematic moves the background only; without it, ``S = 0``.
    """
    nominal = np.stack([templates["signal"], templates["background"]])
    if not systematic:
        empty = np.zeros((0, *nominal.shape))
        return nominal, empty, empty
    up = np.stack([[templates["signal"], templates["up"]]])
    down = np.stack([[templates["signal"], templates["down"]]])
    return nominal, up, down


def fisher_summary(templates: Templates, systematic: bool) -> dict[str, dict[str, Any]]:
    """sqrt((F^-1)_{mu,mu}) and the mu-nuisance correlation from the one-sided Asimov Fishers."""
    nominal, up, down = map(torch.tensor, stacked_templates(templates, systematic))
    signal = torch.tensor([True, False])
    result = {}
    for side in ("up", "down"):
        fisher = asimov_fisher(nominal, up, down, signal, side, create_graph=False)
        correlation = float(poi_nuisance_correlation(fisher)[0]) if systematic else 0.0
        result[side] = {"sigma": float(poi_variance(fisher)) ** 0.5, "correlation": correlation}
    return result
