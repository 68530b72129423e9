"""Taylor-coefficient ranking on the 2D Gaussian toys of Wunsch et al."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from analysis.ml.network import Standardization, build_network
from analysis.ml.taylor import ranked_terms, taylor_coefficients

N_EVENTS = 3000


def trained_network(inputs: np.ndarray, n_signal: int) -> torch.nn.Module:
    """A small tanh network separating the first ``n_signal`` events (class 0) from the rest."""
    torch.manual_seed(7)
    inputs = torch.from_numpy(inputs)
    labels = (torch.arange(len(inputs)) >= n_signal).long()
    network = build_network(2, 2, [16, 16], "tanh", 0.0)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(inputs), labels).backward()
        optimizer.step()
    return network


def top_term(signal: np.ndarray, background: np.ndarray) -> tuple[list[str], dict]:
    # the method works on standardised inputs, as the training stage provides them
    raw = np.concatenate([signal, background])
    inputs = Standardization.fit(raw, np.ones(len(raw))).apply(raw)
    network = trained_network(inputs, len(signal))
    first, second = taylor_coefficients(network, inputs, np.ones(len(inputs)))
    ranking = ranked_terms(first, second, ["x1", "x2"], ["signal", "background"])["signal"]
    return ranking[0]["variables"], ranking


def gaussian(mean, covariance, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, covariance, N_EVENTS)


def test_shifted_means_give_first_order_terms():
    identity = np.eye(2)
    variables, ranking = top_term(
        gaussian([0.5, 0.5], identity, 1), gaussian([-0.5, -0.5], identity, 2)
    )
    assert [term["order"] for term in ranking[:2]] == [1, 1]


def test_opposite_correlations_give_the_mixed_term():
    signal = gaussian([0, 0], [[1, 0.5], [0.5, 1]], 3)
    background = gaussian([0, 0], [[1, -0.5], [-0.5, 1]], 4)
    variables, _ = top_term(signal, background)
    assert variables == ["x1", "x2"]


def test_different_widths_give_diagonal_second_order_terms():
    variables, ranking = top_term(
        gaussian([0, 0], 0.5 * np.eye(2), 5), gaussian([0, 0], 3 * np.eye(2), 6)
    )
    assert {tuple(term["variables"]) for term in ranking[:2]} == {("x1", "x1"), ("x2", "x2")}


def test_coefficients_match_finite_differences():
    torch.manual_seed(0)
    network = build_network(3, 2, [8], "tanh", 0.0)
    network64 = copy.deepcopy(network).double()  # finite differences need double precision
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    first, second = taylor_coefficients(network, x, np.ones(5))

    def f(points):
        with torch.no_grad():
            outputs = network64(torch.from_numpy(np.asarray(points, np.float64)))
            return torch.softmax(outputs, dim=1)[:, 0].numpy()

    step = 1e-2
    gradient = np.zeros((5, 3))
    for i in range(3):
        shift = np.zeros(3, np.float32)
        shift[i] = step
        gradient[:, i] = (f(x + shift) - f(x - shift)) / (2 * step)
    assert first[0] == pytest.approx(np.abs(gradient).mean(axis=0), rel=2e-2, abs=1e-4)
    hessian_00 = (f(x + [step, 0, 0]) - 2 * f(x) + f(x - [step, 0, 0])) / step**2
    assert second[0, 0, 0] == pytest.approx(np.abs(hessian_00).mean(), rel=5e-2, abs=1e-3)
