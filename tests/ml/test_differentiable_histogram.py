"""The differentiable histogram: exact counts forward, Gaussian-kernel gradients backward.

Checked against numpy histograms, a per-event loop and the analytic kernel derivative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.core.errors import AnalysisError
from analysis.ml.differentiable_histogram import Binning, EventSet, differentiable_histogram

DOUBLE = torch.float64


def test_histogram_forward_is_exact_binary():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 500)
    scores[:3] = [0.0, 1.0, 0.5]  # edges: 1.0 belongs to the last bin
    weights = rng.uniform(0.5, 2.0, 500)
    process = rng.integers(0, 3, 500)
    binning = Binning(8)
    hist = differentiable_histogram(
        EventSet(torch.tensor(scores), torch.tensor(weights), torch.tensor(process)), 3, binning
    )
    for p in range(3):
        expected, _ = np.histogram(
            scores[process == p], binning.edges(), weights=weights[process == p]
        )
        np.testing.assert_allclose(hist[p].detach().numpy(), expected, rtol=1e-12)


def test_histogram_forward_is_exact_multiclass():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(400, 3))
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = rng.uniform(0.5, 2.0, 400)
    process = rng.integers(0, 2, 400)
    binning = Binning(4, n_classes=3)
    hist = (
        differentiable_histogram(
            EventSet(torch.tensor(scores), torch.tensor(weights), torch.tensor(process)), 2, binning
        )
        .detach()
        .numpy()
    )
    # Independent per-event loop: category = argmax, bin of the highest score on [1/3, 1].
    expected = np.zeros((2, 12))
    for score, weight, proc in zip(scores, weights, process, strict=True):
        category = int(np.argmax(score))
        index = min(int((score[category] - 1 / 3) / ((1 - 1 / 3) / 4)), 3)
        expected[proc, category * 4 + index] += weight
    np.testing.assert_allclose(hist, expected, rtol=1e-12)


def test_histogram_gradient_is_gaussian_kernel_of_half_bin_width():
    scores = torch.tensor([0.03, 0.41, 0.5, 0.97], dtype=DOUBLE, requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=DOUBLE)
    process = torch.tensor([0, 1, 0, 1])
    coefficients = torch.arange(1.0, 9.0, dtype=DOUBLE).reshape(1, 8) * torch.tensor(
        [[1.0], [-0.5]], dtype=DOUBLE
    )
    hist = differentiable_histogram(EventSet(scores, weights, process), 2, Binning(8))
    (hist * coefficients).sum().backward()
    centres = (np.arange(8) + 0.5) / 8
    sigma = 0.5 / 8
    expected = []
    for x, w, p in zip(scores.detach().numpy(), weights.numpy(), process.numpy(), strict=True):
        kernel_derivative = -(x - centres) / sigma**2 * np.exp(-0.5 * ((x - centres) / sigma) ** 2)
        expected.append(w * np.sum(coefficients[p].numpy() * kernel_derivative))
    np.testing.assert_allclose(scores.grad.numpy(), expected, rtol=1e-10)


def test_histogram_weight_gradient_is_the_exact_indicator():
    scores = torch.tensor([0.1, 0.6], dtype=DOUBLE)
    weights = torch.tensor([1.0, 1.0], dtype=DOUBLE, requires_grad=True)
    hist = differentiable_histogram(EventSet(scores, weights, torch.tensor([0, 0])), 1, Binning(2))
    hist[0, 1].backward()
    assert weights.grad.tolist() == [0.0, 1.0]


def test_bad_inputs_give_one_clear_error():
    events = EventSet(torch.rand(10, 3), torch.ones(10), torch.zeros(10, dtype=torch.long))
    with pytest.raises(AnalysisError, match=r"shape \(N,\)"):
        differentiable_histogram(events, 1, Binning(4))
    with pytest.raises(AnalysisError, match=r"shape \(N, 2\)"):
        differentiable_histogram(events, 1, Binning(4, 2))
    with pytest.raises(AnalysisError, match="bins must be >= 1"):
        Binning(0)
