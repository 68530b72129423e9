"""Projected Newton steps (analysis/stats/newton.py) where -2 log L is not convex."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from analysis.stats import likelihood, newton
from tests.stats.references import double_well


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_start_next_to_the_maximum_reaches_the_minimum_on_its_side(side):
    """From shape = +-0.001, where the Hessian is negative, the steps go down the slope on that
    side to the minimum a bounded scalar minimisation finds there: catches a step that climbs to
    the maximum (plain Newton) or one that crawls (a Hessian damped until it is positive definite
    found no minimum within the 25 iterations allowed). The saddle-free step doubles the distance
    from the maximum each iteration (about 9 from 0.001 to the minimum at 0.57), then converges
    quadratically."""
    model, data = double_well(120.0, 120.0, 112.0)
    names = model.config.par_names
    shape, mu = names.index("shape"), names.index("mu")
    start = np.ones(model.config.npars)
    start[shape] = 0.001 * side
    free = np.ones((1, model.config.npars), dtype=bool)
    free[0, mu] = False  # mu = 1: the yield can only reach the data through shape
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    found = newton.minimize(
        likelihood.build(model, data), start[None], free, bounds, newton.NewtonSettings()
    )

    def twice_nll(value: float) -> float:
        pars = start.copy()
        pars[shape] = value
        return -2.0 * float(model.logpdf(pars, data)[0])

    hessian_at_start = np.diff(np.diff([twice_nll(start[shape] + h) for h in (-1e-3, 0, 1e-3)]))
    assert hessian_at_start[0] < 0
    expected = scipy.optimize.minimize_scalar(
        twice_nll, bounds=sorted((0.0, 3.0 * side)), method="bounded", options={"xatol": 1e-10}
    )
    assert found.valid[0]
    assert found.iterations[0] <= 15
    assert found.values[0, shape] == pytest.approx(expected.x, abs=1e-6)
    assert found.twice_nll[0] == pytest.approx(expected.fun, abs=1e-9)


def test_a_matrix_without_eigendecomposition_gets_no_step():
    """A row whose Hessian is not finite gets a zero saddle-free step, the others theirs
    (``|H|^-1 g``): catches the LinAlgError that stopped a goodness-of-fit job on one toy."""
    import torch

    good = torch.tensor([[2.0, 0.0], [0.0, -4.0]], dtype=torch.float64)
    bad = torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=torch.float64)
    rows = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.float64)
    steps = newton._saddle_free_solve(torch.stack([good, bad]), rows)
    assert torch.allclose(steps[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.equal(steps[1], torch.zeros(2, dtype=torch.float64))
