"""Per-process histograms of a network output that gradients can flow through.

The forward pass gives exact (weighted) bin counts; in the backward pass each bin is replaced by a
Gaussian kernel in the output, centred on the bin with a width of half a bin, so gradients flow to
the scores (straight-through style, Wunsch et al. 2021). A binary network histograms its one
output; a multiclass network (softmax scores) puts each event in the category of its highest score
and histograms that score, the categories' histograms concatenated into one channel list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.core.errors import AnalysisError


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
    process = events.process.long()
    value, category = _histogrammed_score(events.scores, process, binning)
    offset = process * binning.n_channels + category * binning.n_bins
    size = n_processes * binning.n_channels
    exact = _exact_counts(value, events.weights, offset, size, binning)
    soft = _kernel_counts(value, events.weights, offset, size, binning)
    histogram = exact + (soft - soft.detach()).to(exact.dtype)
    return histogram.reshape(n_processes, binning.n_channels)


def _histogrammed_score(
    scores: torch.Tensor, process: torch.Tensor, binning: Binning
) -> tuple[torch.Tensor, torch.Tensor]:
    """The histogrammed score of each event and its category, with the shape checked."""
    if binning.n_classes == 1:
        if scores.dim() != 1:
            raise AnalysisError(
                f"uncertainty-aware loss: binary binning needs scores of shape (N,), "
                f"got {tuple(scores.shape)}"
            )
        return scores, torch.zeros_like(process)
    if scores.dim() != 2 or scores.shape[1] != binning.n_classes:
        raise AnalysisError(
            f"uncertainty-aware loss: {binning.n_classes}-class binning needs scores of shape "
            f"(N, {binning.n_classes}), got {tuple(scores.shape)}"
        )
    # The category is a hard choice in both passes; gradients move events between the bins of
    # their category through the kernel of the highest score.
    return scores.max(dim=1)


def _exact_counts(
    value: torch.Tensor, weights: torch.Tensor, offset: torch.Tensor, size: int, binning: Binning
) -> torch.Tensor:
    """Weighted counts per channel, differentiable in the weights only."""
    index = ((value.detach() - binning.low) / binning.width).floor().long()
    index = index.clamp(0, binning.n_bins - 1)
    exact = torch.zeros(size, dtype=weights.dtype, device=weights.device)
    return exact.scatter_add(0, offset + index, weights)


def _kernel_counts(
    value: torch.Tensor, weights: torch.Tensor, offset: torch.Tensor, size: int, binning: Binning
) -> torch.Tensor:
    """Gaussian-kernel counts per channel (half-bin width), differentiable in the scores only."""
    n_bins = binning.n_bins
    centres = binning.low + binning.width * (
        torch.arange(n_bins, dtype=value.dtype, device=value.device) + 0.5
    )
    sigma = 0.5 * binning.width
    kernel = torch.exp(-0.5 * ((value[:, None] - centres[None, :]) / sigma) ** 2)
    soft_values = (weights.detach()[:, None] * kernel).reshape(-1)
    soft_index = (offset[:, None] + torch.arange(n_bins, device=offset.device)[None, :]).reshape(-1)
    soft = torch.zeros(size, dtype=soft_values.dtype, device=soft_values.device)
    return soft.scatter_add(0, soft_index, soft_values)
