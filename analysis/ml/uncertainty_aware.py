"""Uncertainty-aware training: minimise the expected variance of the signal strength.

The loss follows Wunsch, Jörger, Wolf, Quast, "Optimal statistical inference in the presence of
systematic uncertainties using neural network optimization based on binned Poisson likelihoods
with nuisance parameters", Comput. Softw. Big Sci. 5 (2021) 4, in the spirit of INFERNO and neos.
Instead of a proxy such as the cross entropy, the network is trained on the quantity the analysis
measures: the expected variance of the signal strength ``mu`` from a binned Poisson likelihood of
its own output histogram, with one nuisance parameter per systematic uncertainty.

The pieces, each usable on its own:

1. :func:`differentiable_histogram` - per-process histograms of the network output. The forward
   pass gives exact (weighted) bin counts; in the backward pass each bin is replaced by a Gaussian
   kernel in the output, centred on the bin with a width of half a bin, so gradients flow to the
   scores (straight-through style). A binary network histograms its one output; a multiclass
   network (softmax scores) puts each event in the category of its highest score and histograms
   that score, the categories' histograms concatenated into one channel list.
2. :func:`expected_yields` and :func:`twice_nll` - the binned Poisson likelihood with the POI
   ``mu`` (scaling the signal processes) and one nuisance ``eta_j`` per systematic, with a unit
   Gaussian constraint and the asymmetric linear interpolation
   ``max(eta, 0) * (up - nom) + min(eta, 0) * (nom - down)`` (pyhf's ``histosys`` code0).
3. :func:`asimov_fisher` - the Fisher information on the Asimov dataset at ``(mu=1, eta=0)``, the
   Hessian of the negative log-likelihood from autograd; :func:`poi_variance` - ``(F^-1)_{mu,mu}``;
   :func:`uncertainty_aware_loss` - all of it from per-event scores, weights and process labels.
4. :func:`train_with_early_stopping` - a loop with pre-training (statistical part only or cross
   entropy, chosen by the caller's loss function), then the full loss with early stopping on the
   validation loss, restoring the best network.

Why not pyhf's torch backend for the likelihood: a pyhf model is built from a JSON specification
of plain numbers, so the templates, which carry the autograd graph back to the network, cannot be
put into it without re-implementing the model build. The likelihood here is the same as pyhf's for
``normfactor`` + ``histosys`` (code0) + Gaussian constraints and is checked against pyhf in
``tests/ml/test_uncertainty_aware.py`` and ``bench/uncertainty_aware.py``.

The piecewise-linear interpolation has a kink at ``eta = 0``, where the Fisher information is
evaluated, so the Hessian there is one-sided: :func:`asimov_fisher` computes it for ``eta -> 0+``
(each nuisance moving the templates by ``eta * (up - nom)``) or ``eta -> 0-`` (``eta * (nom -
down)``), and the loss is the mean of the two variances of ``mu``. Why not one symmetric
derivative ``(up - down) / 2``: a network then learns to make both variations move a bin the same
way (a "curvature" the symmetric derivative cannot see, but the profile likelihood does); on the
demonstration toy this gave a loss of 0.37^2 for a network whose profile-likelihood interval was
wider than that of the cross-entropy network. The one-sided Fishers see that effect on each side.

Usage (a multiclass network, one shape systematic from up/down variation skims)::

    from analysis.ml.uncertainty_aware import Binning, EventSet, uncertainty_aware_loss

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

Proposed config keys (the lead adds them to the ``train`` section, schema and config/README.md):

- ``train.loss``: ``cross_entropy | uncertainty_aware``, default ``cross_entropy``: the training
  objective.
- ``train.uncertainty_aware.bins``: int >= 2, default 8: bins of the histogrammed output (per
  category for a multiclass network).
- ``train.uncertainty_aware.systematics``: list of shape-variation names (from ``variations``,
  e.g. ``[tau_es]``) or event-weight variation names, default ``[]``: the nuisance parameters in
  the loss; an empty list trains on the statistical part only.
- ``train.uncertainty_aware.signal``: list of process names scaled by ``mu``, default the signal
  processes of ``samples.yaml``.
- ``train.uncertainty_aware.pretraining``: ``statistical | cross_entropy``, default
  ``statistical``: the loss of the pre-training steps.
- ``train.uncertainty_aware.pretraining_steps``: int >= 0, default 100.
- ``train.uncertainty_aware.max_steps``: int >= 1, default 5000.
- ``train.uncertainty_aware.patience``: int >= 1, default 100: steps without improvement of the
  validation loss before stopping.
- ``train.uncertainty_aware.learning_rate``: float > 0, default 1e-3 (Adam).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from analysis.core.errors import AnalysisError

#: Smallest expected bin count used in logarithms and divisions: an empty bin (no events of any
#: process) then contributes nothing instead of 0/0.
_MIN_YIELD = 1e-9


@dataclass(frozen=True)
class Binning:
    """Histogram binning of the network output.

    Attributes:
        n_bins: bins per category.
        n_classes: 1 for a binary network (one output in [0, 1], ``n_bins`` equal bins); ``K > 1``
            for a multiclass network: ``K`` categories by highest score, each histogramming its
            score in ``n_bins`` equal bins on ``[1/K, 1]`` (the range of a highest softmax score).
    """

    n_bins: int
    n_classes: int = 1

    def __post_init__(self) -> None:
        if self.n_bins < 1:
            raise AnalysisError(f"uncertainty-aware binning: bins must be >= 1, got {self.n_bins}")
        if self.n_classes < 1:
            raise AnalysisError(
                f"uncertainty-aware binning: n_classes must be >= 1, got {self.n_classes}"
            )

    @property
    def low(self) -> float:
        """Lower edge of each category's score range."""
        return 0.0 if self.n_classes == 1 else 1.0 / self.n_classes

    @property
    def width(self) -> float:
        """Bin width in the score."""
        return (1.0 - self.low) / self.n_bins

    @property
    def n_channels(self) -> int:
        """Total number of bins: categories times bins per category."""
        return self.n_classes * self.n_bins

    def edges(self) -> np.ndarray:
        """Bin edges of one category."""
        return np.linspace(self.low, 1.0, self.n_bins + 1)


@dataclass
class EventSet:
    """Per-event network scores, weights and process indices of one event sample.

    Attributes:
        scores: ``(N,)`` output in [0, 1] of a binary network, or ``(N, K)`` softmax scores.
        weights: ``(N,)`` event weights normalised to the expected yields.
        process: ``(N,)`` integer process index of each event.
    """

    scores: torch.Tensor
    weights: torch.Tensor
    process: torch.Tensor


def differentiable_histogram(events: EventSet, n_processes: int, binning: Binning) -> torch.Tensor:
    """Per-process histograms of the network output with Gaussian-kernel gradients.

    Forward: exact weighted counts. Backward: the derivative with respect to an event's score is
    that of ``w * exp(-(x - c_b)^2 / (2 sigma^2))`` for each bin centre ``c_b`` of the event's
    category, ``sigma`` half a bin width (Wunsch et al.). The weights get the derivative of the
    exact counts (an indicator), so the histogram is also correct as a function of the weights.

    Args:
        events: scores, weights and process indices.
        n_processes: number of processes (rows of the result).
        binning: the output binning (binary or multiclass categories).

    Returns:
        Tensor ``(n_processes, binning.n_channels)``; for a multiclass network the channels are
        category 0's bins, then category 1's, and so on.
    """
    scores, weights, process = events.scores, events.weights, events.process.long()
    if binning.n_classes == 1:
        if scores.dim() != 1:
            raise AnalysisError(
                f"uncertainty-aware loss: binary binning needs scores of shape (N,), "
                f"got {tuple(scores.shape)}"
            )
        value = scores
        category = torch.zeros_like(process)
    else:
        if scores.dim() != 2 or scores.shape[1] != binning.n_classes:
            raise AnalysisError(
                f"uncertainty-aware loss: {binning.n_classes}-class binning needs scores of shape "
                f"(N, {binning.n_classes}), got {tuple(scores.shape)}"
            )
        # The category is a hard choice in both passes; gradients move events between the bins
        # of their category through the kernel of the highest score.
        value, category = scores.max(dim=1)
    n_bins = binning.n_bins
    offset = process * binning.n_channels + category * n_bins
    size = n_processes * binning.n_channels

    index = ((value.detach() - binning.low) / binning.width).floor().long().clamp(0, n_bins - 1)
    exact = torch.zeros(size, dtype=weights.dtype, device=weights.device)
    exact = exact.scatter_add(0, offset + index, weights)

    centres = binning.low + binning.width * (
        torch.arange(n_bins, dtype=value.dtype, device=value.device) + 0.5
    )
    sigma = 0.5 * binning.width
    kernel = torch.exp(-0.5 * ((value[:, None] - centres[None, :]) / sigma) ** 2)
    soft_values = (weights.detach()[:, None] * kernel).reshape(-1)
    soft_index = (offset[:, None] + torch.arange(n_bins, device=offset.device)[None, :]).reshape(-1)
    soft = torch.zeros(size, dtype=soft_values.dtype, device=soft_values.device)
    soft = soft.scatter_add(0, soft_index, soft_values)

    histogram = exact + (soft - soft.detach()).to(exact.dtype)
    return histogram.reshape(n_processes, binning.n_channels)


def expected_yields(
    params: torch.Tensor,
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str | None = None,
) -> torch.Tensor:
    """Expected counts per bin for ``params = (mu, eta_1, ..., eta_S)``.

    Args:
        params: ``(1 + S,)`` signal strength and nuisance parameters.
        nominal: ``(P, B)`` nominal templates per process.
        up: ``(S, P, B)`` up templates per systematic and process.
        down: ``(S, P, B)`` down templates.
        signal: ``(P,)`` boolean mask of the processes scaled by ``mu``.
        side: ``None`` for the interpolation ``max(eta,0)(up-nom) + min(eta,0)(nom-down)``;
            ``"up"`` or ``"down"`` for its linear continuation from ``eta >= 0`` (``eta(up-nom)``)
            or ``eta <= 0`` (``eta(nom-down)``), smooth at 0 for one-sided derivatives.

    Returns:
        ``(B,)`` expected counts summed over processes.
    """
    mu, eta = params[0], params[1:]
    if side is None:
        delta = torch.einsum("s,spb->pb", eta.clamp(min=0), up - nominal[None]) + torch.einsum(
            "s,spb->pb", eta.clamp(max=0), nominal[None] - down
        )
    elif side == "up":
        delta = torch.einsum("s,spb->pb", eta, up - nominal[None])
    elif side == "down":
        delta = torch.einsum("s,spb->pb", eta, nominal[None] - down)
    else:
        raise ValueError(f"side must be None, 'up' or 'down', not {side!r}")
    per_process = nominal + delta
    scale = torch.where(signal, mu, torch.ones_like(mu))
    return (scale[:, None] * per_process).sum(dim=0)


def twice_nll(
    params: torch.Tensor,
    data: torch.Tensor,
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str | None = None,
) -> torch.Tensor:
    """-2 ln L of the binned Poisson likelihood with unit Gaussian constraints on the nuisances.

    Constant terms (``ln d!``, the Gaussian normalisation) are left out, so differences between
    parameter points are those of pyhf's ``twice_nll``.

    Args:
        params: ``(1 + S,)`` signal strength and nuisance parameters.
        data: ``(B,)`` observed counts (the Asimov counts for expected results).
        nominal, up, down, signal, side: as in :func:`expected_yields`.
    """
    expected = expected_yields(params, nominal, up, down, signal, side).clamp_min(_MIN_YIELD)
    poisson = (expected - data * torch.log(expected)).sum()
    constraint = 0.5 * (params[1:] ** 2).sum()
    return 2.0 * (poisson + constraint)


def asimov_fisher(
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str = "up",
    create_graph: bool = True,
) -> torch.Tensor:
    """Fisher information of ``(mu, eta)`` on the Asimov dataset at ``mu = 1, eta = 0``.

    The Hessian of ``-ln L`` from autograd, one-sided in the nuisances (the interpolation has a
    kink at 0). The Asimov counts are the expected counts of the same templates (not detached),
    so the result and its gradient with respect to the templates are those of the expected Fisher
    information ``J^T diag(1/nu) J + 1_eta``.

    Args:
        nominal, up, down, signal: as in :func:`expected_yields`.
        side: ``"up"`` (``eta -> 0+``) or ``"down"`` (``eta -> 0-``).
        create_graph: keep the graph so that the result can be differentiated (training).

    Returns:
        ``(1 + S, 1 + S)`` symmetric matrix.
    """
    n_params = 1 + up.shape[0]
    point = torch.zeros(n_params, dtype=nominal.dtype, device=nominal.device)
    point[0] = 1.0
    asimov = expected_yields(point, nominal, up, down, signal)

    def half_twice_nll(params: torch.Tensor) -> torch.Tensor:
        return 0.5 * twice_nll(params, asimov, nominal, up, down, signal, side)

    return torch.autograd.functional.hessian(half_twice_nll, point, create_graph=create_graph)


def poi_variance(fisher: torch.Tensor) -> torch.Tensor:
    """``(F^-1)_{mu,mu}``: the expected variance of the signal strength (first parameter)."""
    unit = torch.zeros(fisher.shape[0], dtype=fisher.dtype, device=fisher.device)
    unit[0] = 1.0
    return torch.linalg.solve(fisher, unit)[0]


def poi_nuisance_correlation(fisher: torch.Tensor) -> torch.Tensor:
    """Correlations of ``mu`` with each nuisance from the inverse Fisher information, ``(S,)``."""
    covariance = torch.linalg.inv(fisher)
    sigma = torch.sqrt(torch.diagonal(covariance))
    return covariance[0, 1:] / (sigma[0] * sigma[1:])


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
            f"indices in 0..{n_processes - 1}; check train.uncertainty_aware.signal"
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


def profile_scan(
    mu_values: Sequence[float],
    nominal: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    signal: np.ndarray,
) -> np.ndarray:
    """Profile-likelihood scan of ``mu`` on the Asimov dataset, ``-2 Delta ln L`` per value.

    The nuisances are profiled by Newton's method with autograd derivatives and backtracking,
    started at ``eta = 0`` and at all nuisances ``+-0.5`` (the likelihood is smooth on each side
    of the kink at 0, which a single start may not cross); ``mu`` is fixed at each scan value.
    Used to cross-check pyhf in the tests and the demonstration.

    Args:
        mu_values: scan points.
        nominal, up, down, signal: numpy templates as in :func:`expected_yields`.

    Returns:
        ``-2 Delta ln L`` at each scan point, relative to the Asimov minimum at ``mu = 1``.
    """
    nom = torch.as_tensor(nominal, dtype=torch.float64)
    up_t = torch.as_tensor(up, dtype=torch.float64)
    down_t = torch.as_tensor(down, dtype=torch.float64)
    mask = torch.as_tensor(signal, dtype=torch.bool)
    point = torch.zeros(1 + up_t.shape[0], dtype=torch.float64)
    point[0] = 1.0
    asimov = expected_yields(point, nom, up_t, down_t, mask)
    minimum = float(twice_nll(point, asimov, nom, up_t, down_t, mask))

    def newton(objective: Callable[[torch.Tensor], torch.Tensor], eta: torch.Tensor) -> float:
        value = float(objective(eta))
        for _ in range(100):
            grad = torch.autograd.functional.jacobian(objective, eta)
            hess = torch.autograd.functional.hessian(objective, eta)
            step = torch.linalg.solve(hess, grad)
            # Backtracking keeps every step downhill, also across the kink at eta = 0.
            scale, trial_value = 1.0, math.inf
            while scale > 1e-6:
                trial = eta - scale * step
                trial_value = float(objective(trial))
                if trial_value <= value:
                    break
                scale *= 0.5
            if not trial_value <= value:
                break
            improvement = value - trial_value
            eta, value = trial, trial_value
            if improvement < 1e-12:
                break
        return value

    def profiled(mu: float) -> float:
        def objective(eta: torch.Tensor) -> torch.Tensor:
            params = torch.cat([torch.tensor([mu], dtype=torch.float64), eta])
            return twice_nll(params, asimov, nom, up_t, down_t, mask)

        n_eta = up_t.shape[0]
        if n_eta == 0:
            return float(objective(torch.zeros(0, dtype=torch.float64))) - minimum
        # The likelihood is smooth on each side of the kink: starting on both sides finds the
        # minimum whichever side it is on.
        starts = [torch.full((n_eta,), value, dtype=torch.float64) for value in (0.0, 0.5, -0.5)]
        return min(newton(objective, start) for start in starts) - minimum

    return np.array([profiled(float(mu)) for mu in mu_values])


def interval_68(mu_values: np.ndarray, delta_twice_nll: np.ndarray) -> tuple[float, float]:
    """Where ``-2 Delta ln L`` crosses 1 on each side of its minimum (linear interpolation).

    Raises:
        AnalysisError: if the scan does not reach 1 on both sides; widen the scan range.
    """
    mu_values = np.asarray(mu_values, dtype=float)
    curve = np.asarray(delta_twice_nll, dtype=float)
    if not np.all(np.isfinite(curve)):
        raise AnalysisError(
            "profile-likelihood scan has non-finite values (negative expected counts?); "
            "restrict the scan range"
        )
    best = int(np.argmin(curve))
    left, right = curve[: best + 1][::-1], curve[best:]
    if left.max() < 1.0 or right.max() < 1.0:
        raise AnalysisError(
            "profile-likelihood scan does not reach -2 Delta ln L = 1 on both sides of the "
            f"minimum (range {mu_values[0]}..{mu_values[-1]}); widen the scan range"
        )
    lo_i = best - int(np.argmax(left >= 1.0))
    hi_i = best + int(np.argmax(right >= 1.0))
    lo = np.interp(1.0, [curve[lo_i + 1], curve[lo_i]], [mu_values[lo_i + 1], mu_values[lo_i]])
    hi = np.interp(1.0, [curve[hi_i - 1], curve[hi_i]], [mu_values[hi_i - 1], mu_values[hi_i]])
    return float(lo), float(hi)


@dataclass(frozen=True)
class LoopSettings:
    """Settings of :func:`train_with_early_stopping`.

    Attributes:
        pretrain_steps: steps with the pre-training loss before the full loss.
        max_steps: most steps with the full loss.
        patience: full-loss steps without a better validation loss before stopping.
        learning_rate: Adam learning rate.
    """

    pretrain_steps: int = 100
    max_steps: int = 5000
    patience: int = 100
    learning_rate: float = 1e-3


@dataclass
class LoopHistory:
    """Losses per step of :func:`train_with_early_stopping` and the step kept."""

    phase: list[str] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    best_step: int = -1
    best_validation: float = math.inf


def train_with_early_stopping(
    network: nn.Module,
    pretrain_loss: Callable[[], torch.Tensor],
    train_loss: Callable[[], torch.Tensor],
    validation_loss: Callable[[], torch.Tensor],
    settings: LoopSettings,
) -> LoopHistory:
    """Pre-train, then minimise the full loss with early stopping; the best network is restored.

    The callables evaluate the network on their own events (the caller closes over the data, which
    may also draw a minibatch per call). Typical choices: ``pretrain_loss`` the uncertainty-aware
    loss without systematics (the statistical part) or the cross entropy; ``train_loss`` and
    ``validation_loss`` the uncertainty-aware loss with systematics on the training and validation
    events. The validation loss is evaluated without gradients on the network.

    Args:
        network: the model, trained in place.
        pretrain_loss: loss of the pre-training steps.
        train_loss: the full loss on training events.
        validation_loss: the full loss on validation events (early stopping).
        settings: steps, patience and learning rate.

    Returns:
        The loss history; ``best_step`` counts the full-loss steps (-1: before the first one).
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    history = LoopHistory()

    def step(loss_fn: Callable[[], torch.Tensor], phase: str) -> None:
        network.train()
        optimizer.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise AnalysisError(
                f"uncertainty-aware training: the {phase} loss is {float(loss)}; lower "
                "train.uncertainty_aware.learning_rate or check the event weights"
            )
        loss.backward()
        optimizer.step()
        history.phase.append(phase)
        history.train.append(float(loss.detach()))

    def validate() -> float:
        network.eval()
        with torch.no_grad():
            return float(validation_loss())

    for _ in range(settings.pretrain_steps):
        step(pretrain_loss, "pretrain")
        history.validation.append(validate())

    best_state = copy.deepcopy(network.state_dict())
    history.best_validation = validate()
    since_best = 0
    for index in range(settings.max_steps):
        step(train_loss, "full")
        current = validate()
        history.validation.append(current)
        if current < history.best_validation:
            history.best_validation, history.best_step = current, index
            best_state = copy.deepcopy(network.state_dict())
            since_best = 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    network.load_state_dict(best_state)
    network.eval()
    return history
