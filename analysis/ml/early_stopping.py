"""Early stopping on a validation loss, and a pre-train-then-train loop built on it.

:class:`EarlyStopping` keeps the network state of the best validation loss and says when the
patience has run out; the cross-entropy training (per epoch) and :func:`train_with_early_stopping`
(per step, used for the uncertainty-aware loss) both use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from analysis.core.errors import AnalysisError


class EarlyStopping:
    """The best validation loss so far, its step, and a copy of the network at that step.

    Args:
        patience: steps without a better validation loss after which :meth:`update` says stop.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_step: int | None = None
        self.waited = 0
        self._state: dict[str, torch.Tensor] | None = None

    def keep(self, loss: float, step: int, network: nn.Module) -> None:
        """Take ``loss`` at ``step`` as the best so far and copy the network's state."""
        self.best, self.best_step, self.waited = loss, step, 0
        self._state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    def update(self, loss: float, step: int, network: nn.Module) -> bool:
        """Record the validation loss after ``step``; true when the patience has run out."""
        if loss < self.best:
            self.keep(loss, step, network)
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, network: nn.Module) -> None:
        """Load the state of the best step into ``network``."""
        network.load_state_dict(self._state)


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
    for _ in range(settings.pretrain_steps):
        _step(network, optimizer, pretrain_loss, "pretrain", history)
        history.validation.append(_validate(network, validation_loss))

    stopping = EarlyStopping(settings.patience)
    stopping.keep(_validate(network, validation_loss), -1, network)
    for index in range(settings.max_steps):
        _step(network, optimizer, train_loss, "full", history)
        current = _validate(network, validation_loss)
        history.validation.append(current)
        if stopping.update(current, index, network):
            break
    stopping.restore(network)
    network.eval()
    history.best_step, history.best_validation = stopping.best_step, stopping.best
    return history


def _step(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], torch.Tensor],
    phase: str,
    history: LoopHistory,
) -> None:
    """One optimiser step on ``loss_fn``, recorded in ``history``; a non-finite loss stops."""
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


def _validate(network: nn.Module, validation_loss: Callable[[], torch.Tensor]) -> float:
    """The validation loss of the network in evaluation mode, without gradients."""
    network.eval()
    with torch.no_grad():
        return float(validation_loss())
