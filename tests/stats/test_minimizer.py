"""The minimiser's batched gradient (analysis/stats/minimizer.py) against single pyhf
evaluations."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from analysis.stats import minimizer
from tests.stats.references import load


@pytest.mark.parametrize("max_batch", [64, 5])
def test_batched_gradient_against_single_evaluations(monkeypatch, max_batch):
    """The batched central differences equal ones from single pyhf evaluations, in any batching."""
    monkeypatch.setattr(minimizer, "MAX_BATCH", max_batch)
    setup = load("multichannel")  # staterror, shapesys, normsys, histosys, lumi, normfactors
    model = setup.model
    monkeypatch.setattr(minimizer, "_BATCHED_MODELS", weakref.WeakKeyDictionary())
    pars = np.asarray(model.config.suggested_init()) + 0.01 * np.arange(model.config.npars) / 19
    gradient = minimizer.gradient_function(model, setup.data)(pars)
    steps = minimizer.GRADIENT_STEP * minimizer.default_steps(model)
    expected = []
    for i, step in enumerate(steps):
        up, down = pars.copy(), pars.copy()
        up[i] += step
        down[i] -= step
        difference = model.logpdf(up, setup.data)[0] - model.logpdf(down, setup.data)[0]
        expected.append(-2.0 * difference / (2.0 * step))
    np.testing.assert_allclose(gradient, expected, rtol=1e-9, atol=1e-9)
    # and it is the derivative: compare with a coarser step
    coarse = []
    for i, step in enumerate(10 * steps):
        up, down = pars.copy(), pars.copy()
        up[i] += step
        down[i] -= step
        difference = model.logpdf(up, setup.data)[0] - model.logpdf(down, setup.data)[0]
        coarse.append(-2.0 * difference / (2.0 * step))
    np.testing.assert_allclose(gradient, coarse, rtol=1e-4, atol=1e-6)
