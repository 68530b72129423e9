"""Profile-likelihood scan of the signal strength on Asimov data, and its 68% interval.

A cross-check of the likelihood in :mod:`analysis.ml.asimov_likelihood` against pyhf (tests and
``bench/uncertainty_aware.py``): the width of the interval is what the uncertainty-aware loss
aims to shrink.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from analysis.core.errors import AnalysisError
from analysis.ml.asimov_likelihood import asimov_point, twice_nll

#: Most Newton steps, and the smallest step scale of the backtracking, per profiled fit.
_NEWTON_STEPS = 100
_MIN_STEP_SCALE = 1e-6

#: Newton stops when a step lowers the objective by less than this.
_TOLERANCE = 1e-12

#: Starting values of every nuisance: the likelihood is smooth on each side of the kink at 0,
#: which a single start may not cross, so one start on each side finds the minimum on either.
_STARTS = (0.0, 0.5, -0.5)

Templates = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def profile_scan(
    mu_values: Sequence[float],
    nominal: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    signal: np.ndarray,
) -> np.ndarray:
    """Profile-likelihood scan of ``mu`` on the Asimov dataset, ``-2 Delta ln L`` per value.

    The nuisances are profiled by Newton's method with autograd derivatives and backtracking,
    started at ``eta = 0`` and at all nuisances ``+-0.5``; ``mu`` is fixed at each scan value.

    Args:
        mu_values: scan points.
        nominal, up, down, signal: numpy templates as in
            :func:`analysis.ml.asimov_likelihood.expected_yields`.

    Returns:
        ``-2 Delta ln L`` at each scan point, relative to the Asimov minimum at ``mu = 1``.
    """
    templates: Templates = (
        torch.as_tensor(nominal, dtype=torch.float64),
        torch.as_tensor(up, dtype=torch.float64),
        torch.as_tensor(down, dtype=torch.float64),
        torch.as_tensor(signal, dtype=torch.bool),
    )
    point, asimov = asimov_point(*templates)
    minimum = float(twice_nll(point, asimov, *templates))
    return np.array(
        [_profiled_twice_nll(float(mu), asimov, templates) - minimum for mu in mu_values]
    )


def _profiled_twice_nll(mu: float, asimov: torch.Tensor, templates: Templates) -> float:
    """``-2 ln L`` at fixed ``mu``, minimised over the nuisances from each of :data:`_STARTS`."""

    def objective(eta: torch.Tensor) -> torch.Tensor:
        params = torch.cat([torch.tensor([mu], dtype=torch.float64), eta])
        return twice_nll(params, asimov, *templates)

    n_eta = templates[1].shape[0]
    if n_eta == 0:
        return float(objective(torch.zeros(0, dtype=torch.float64)))
    starts = [torch.full((n_eta,), value, dtype=torch.float64) for value in _STARTS]
    return min(_newton_minimum(objective, start) for start in starts)


def _newton_minimum(objective: Callable[[torch.Tensor], torch.Tensor], eta: torch.Tensor) -> float:
    """The minimum of ``objective`` by Newton steps from ``eta``, each made downhill."""
    value = float(objective(eta))
    for _ in range(_NEWTON_STEPS):
        grad = torch.autograd.functional.jacobian(objective, eta)
        hess = torch.autograd.functional.hessian(objective, eta)
        step = torch.linalg.solve(hess, grad)
        trial, trial_value = _backtrack(objective, eta, step, value)
        if not trial_value <= value:
            break
        improvement = value - trial_value
        eta, value = trial, trial_value
        if improvement < _TOLERANCE:
            break
    return value


def _backtrack(
    objective: Callable[[torch.Tensor], torch.Tensor],
    eta: torch.Tensor,
    step: torch.Tensor,
    value: float,
) -> tuple[torch.Tensor, float]:
    """Halve the Newton step until it does not go uphill (also across the kink at eta = 0).

    Returns the last point tried and its value, which is above ``value`` if no scale worked.
    """
    scale, trial, trial_value = 1.0, eta, math.inf
    while scale > _MIN_STEP_SCALE:
        trial = eta - scale * step
        trial_value = float(objective(trial))
        if trial_value <= value:
            break
        scale *= 0.5
    return trial, trial_value


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
