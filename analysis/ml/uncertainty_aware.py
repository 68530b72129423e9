"""Uncertainty-aware loss: the expected variance of the signal strength.

The loss follows Wunsch, Jörger, Wolf, Quast, "Optimal statistical inference in the presence of
systematic uncertainties using neural network optimization based on binned Poisson likelihoods
with nuisance parameters", Comput. Softw. Big Sci. 5 (2021) 4, in the spirit of INFERNO and neos.
Instead of a proxy such as the cross entropy, the network is trained on the quantity the analysis
measures: the expected variance of the signal strength ``mu`` from a binned Poisson likelihood of
its own output histogram, with one nuisance parameter per systematic uncertainty.

The pieces, each usable on its own:

1. :mod:`analysis.ml.differentiable_histogram` - per-process histograms of the network output,
   exact forward and with Gaussian-kernel gradients.
2. :mod:`analysis.ml.asimov_likelihood` - the binned Poisson likelihood with ``mu`` and the
   nuisances, and its one-sided Fisher information on the Asimov dataset.
3. This module - :func:`uncertainty_aware_loss`, ``(F^-1)_{mu,mu}`` from per-event scores,
   weights and process labels.
4. :mod:`analysis.ml.early_stopping` - a loop with pre-training and early stopping on the
   validation loss; :mod:`analysis.ml.profile_scan` - the profile-likelihood cross-check.

With systematics the loss is the mean of the two variances of ``mu`` from the one-sided Fisher
informations (``eta -> 0+`` and ``eta -> 0-``). Why not one symmetric derivative
``(up - down) / 2``: a network then learns to make both variations move a bin the same way (a
"curvature" the symmetric derivative cannot see, but the profile likelihood does); on the
demonstration toy this gave a loss of 0.37^2 for a network whose profile-likelihood interval was
wider than that of the cross-entropy network. The one-sided Fishers see that effect on each side.

Usage (a multiclass network, one shape systematic from up/down variation skims)::

    from analysis.ml.differentiable_histogram import Binning, EventSet
    from analysis.ml.uncertainty_aware import uncertainty_aware_loss

    binning = Binning(n_bins=8, n_classes=len(classes))
    nominal = EventSet(torch.softmax(net(x_nom), dim=1), w_nom, process_nom)
    variations = {
        "tes": (
            EventSet(torch.softmax(net(x_tes_up), dim=1), w_tes_up, process_tes_up),
            EventSet(torch.softmax(net(x_tes_down), dim=1), w_tes_down, process_tes_down),
        ),
    }
    loss = uncertainty_aware_loss(nominal, variations, signal=[0, 1], n_processes=7,
                                  binning=binning)
    loss.backward()

``process_*`` are integer process indices (``0 .. n_processes - 1``) and ``signal`` lists those
scaled by ``mu``. The weights must be the physical event weights (cross section x luminosity x
corrections, not class-balanced) normalised to the expected yields of the full dataset: the loss
depends on the absolute event counts. For the training events of a k-fold split, (k-1)/k of all
events, multiply them by k/(k-1); for a minibatch, by the inverse of the fraction of events in the
batch (the demonstration trains on the full batch). Each variation's event sets must cover every
process: a process that the systematic does not affect enters with its nominal events. A
weight-only systematic passes the nominal scores with the varied weights. For a binary network
the scores are the sigmoid output, shape ``(N,)``, with ``Binning(n_bins, n_classes=1)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from analysis.core.errors import AnalysisError
from analysis.ml.asimov_likelihood import asimov_fisher, poi_variance
from analysis.ml.differentiable_histogram import Binning, EventSet, differentiable_histogram


def build_templates(
    nominal: EventSet,
    variations: Mapping[str, tuple[EventSet, EventSet]],
    n_processes: int,
    binning: Binning,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nominal ``(P, B)`` and up/down ``(S, P, B)`` templates, systematics in mapping order."""
    nominal_hist = differentiable_histogram(nominal, n_processes, binning)
    ups, downs = [], []
    for up_events, down_events in variations.values():
        ups.append(differentiable_histogram(up_events, n_processes, binning))
        downs.append(differentiable_histogram(down_events, n_processes, binning))
    if ups:
        return nominal_hist, torch.stack(ups), torch.stack(downs)
    empty = nominal_hist.new_zeros((0, *nominal_hist.shape))
    return nominal_hist, empty, empty


def signal_mask(signal: Sequence[int], n_processes: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(n_processes,)`` mask of the signal process indices, checked."""
    bad = [index for index in signal if not 0 <= index < n_processes]
    if bad or not signal:
        raise AnalysisError(
            f"uncertainty-aware loss: signal processes {list(signal)} must be a non-empty list of "
            f"indices in 0..{n_processes - 1}; check histograms.signals"
        )
    mask = torch.zeros(n_processes, dtype=torch.bool, device=device)
    mask[list(signal)] = True
    return mask


def uncertainty_aware_loss(
    nominal: EventSet,
    variations: Mapping[str, tuple[EventSet, EventSet]],
    signal: Sequence[int],
    n_processes: int,
    binning: Binning,
) -> torch.Tensor:
    """The expected variance of ``mu``, ``(F^-1)_{mu,mu}``, from per-event network outputs.

    With systematics, the mean of the variances from the one-sided Fisher informations
    (``eta -> 0+`` and ``eta -> 0-``, see the module docstring).

    Args:
        nominal: scores, weights (normalised to the expected yields) and process indices of the
            nominal events.
        variations: for each systematic in the loss, its (up, down) event sets; an empty mapping
            gives the statistical part only.
        signal: process indices scaled by ``mu``.
        n_processes: number of processes.
        binning: output binning.

    Returns:
        A differentiable scalar.
    """
    nominal_hist, up, down = build_templates(nominal, variations, n_processes, binning)
    mask = signal_mask(signal, n_processes, nominal_hist.device)
    create_graph = torch.is_grad_enabled()
    if up.shape[0] == 0:
        return poi_variance(asimov_fisher(nominal_hist, up, down, mask, create_graph=create_graph))
    variances = [
        poi_variance(asimov_fisher(nominal_hist, up, down, mask, side, create_graph))
        for side in ("up", "down")
    ]
    return 0.5 * (variances[0] + variances[1])
