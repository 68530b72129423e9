"""Many bounded minimisations at once: projected Newton steps with a backtracking line search.

The refits of the ranking and the scans are small, smooth, nearly quadratic problems that start
next to their minimum (see :func:`analysis.stats.minimizer.profile_start`). :func:`minimize`
solves a batch of them together: each iteration evaluates -2 log L, its gradient and its exact
Hessian for every unfinished refit in one vectorised call (:class:`analysis.stats.likelihood.
Likelihood`), takes the Newton step on the free parameters not held at a bound (Bertsekas's
projected Newton method: a parameter at a bound whose gradient pushes it outward stays there), and
backtracks along the projected step until -2 log L decreases enough (Armijo). Where the Hessian is
not positive definite (a nuisance parameter whose up and down templates shift the yields the same
way gives -2 log L two minima, and a saddle between them), the step uses the Hessian with its
eigenvalues replaced by their absolute values (the saddle-free Newton step of Dauphin et al.,
arXiv:1406.2572): a descent direction that moves fast away from the saddle along the directions of
negative curvature, where damping the Hessian until it is positive definite crawls.

A refit is valid when, at its final point, the estimated distance to the minimum
``edm = g^T H^-1 g / 2`` over the free parameters off their bounds is below ``edm_goal`` (for
-2 log L that is the squared distance to the minimum in standard deviations: the scale-free form of
"the gradient is small"), their Hessian is positive definite, every parameter is inside its bounds
and -2 log L is finite and not above its value at the start. Every refit's iterations depend on its
own row only, so a refit gives the same numbers in any batch. A likelihood with one data set per
row (toys) minimises each row on its own data set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from analysis.stats.likelihood import Likelihood

#: Smallest eigenvalue magnitude of a saddle-free step, relative to the largest: a flat direction
#: gets a long step that the line search shortens, not an infinite one.
FLAT = 1e-8
#: Sufficient decrease of the Armijo condition.
ARMIJO = 1e-4
#: Rounding allowance on -2 log L, relative to its value: next to the minimum a full Newton step
#: may "increase" -2 log L by rounding (its terms are sums of thousands of events), which neither
#: the line search nor the final check (not above the start) holds against the step.
ROUNDING = 1e-12


class NewtonSettings(NamedTuple):
    """Convergence goal and iteration limits of :func:`minimize`; with ``scoring``, a step where
    the Hessian is not positive definite uses the Fisher information instead (Fisher scoring,
    before any damping)."""

    edm_goal: float = 1e-10
    max_iterations: int = 25
    max_halvings: int = 40
    scoring: bool = False


class BatchMinimum(NamedTuple):
    """Where each refit of a batch ended, and whether that is a valid minimum."""

    values: np.ndarray
    twice_nll: np.ndarray
    edm: np.ndarray
    valid: np.ndarray
    iterations: np.ndarray


class _Step(NamedTuple):
    """One Newton step per running refit."""

    direction: torch.Tensor
    edm: torch.Tensor
    positive: torch.Tensor


def minimize(
    likelihood: Likelihood,
    starts: np.ndarray,
    free: np.ndarray,
    bounds: np.ndarray,
    settings: NewtonSettings,
) -> BatchMinimum:
    """Minimise -2 log L from each start, moving only the ``free`` parameters of its row.

    Args:
        likelihood: the vectorised -2 log L (one data set, or one per row of ``starts``).
        starts: ``(k, npars)`` start values, inside ``bounds``.
        free: ``(k, npars)`` which parameters each refit may move.
        bounds: ``(npars, 2)`` lower and upper bounds.
        settings: convergence goal and limits.

    Returns:
        The final points, -2 log L there, the EDM, validity and Newton iterations per refit.
    """
    x = likelihood.to_tensor(starts).clone()
    free_t = torch.as_tensor(np.asarray(free, dtype=bool), device=x.device)
    lower, upper = (likelihood.to_tensor(bounds[:, i]) for i in (0, 1))
    k = len(x)
    start_nll = likelihood.values(x)
    nll, edm = start_nll.clone(), torch.full((k,), np.inf, dtype=x.dtype, device=x.device)
    converged = torch.zeros(k, dtype=torch.bool, device=x.device)
    iterations = torch.zeros(k, dtype=torch.int64, device=x.device)
    running = torch.arange(k, device=x.device)
    for _ in range(settings.max_iterations):
        if len(running) == 0:
            break
        value, gradient, hessian, *information = likelihood.for_rows(running).derivatives(
            x[running], settings.scoring
        )
        step = _newton_step(
            x[running], gradient, hessian, free_t[running], lower, upper, *information
        )
        nll[running], edm[running] = value, step.edm
        done = step.positive & (step.edm < settings.edm_goal) & torch.isfinite(value)
        converged[running[done]] = True
        moving = running[~done]
        iterations[moving] += 1
        accepted = _line_search(
            likelihood, x, moving, step.direction[~done], gradient[~done], value[~done],
            lower, upper, settings.max_halvings,
        )  # fmt: skip
        running = moving[accepted]
    inside = torch.all((x >= lower) & (x <= upper), dim=1)
    valid = converged & inside & torch.isfinite(nll) & (nll <= start_nll + _slack(start_nll))
    return BatchMinimum(*(tensor.cpu().numpy() for tensor in (x, nll, edm, valid, iterations)))


def _newton_step(
    x: torch.Tensor,
    gradient: torch.Tensor,
    hessian: torch.Tensor,
    free: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    information: torch.Tensor | None = None,
) -> _Step:
    """The projected Newton step of each refit, its EDM, and whether the Hessian of the moving
    parameters is positive definite; where it is not, the step of the Fisher ``information`` if
    given and positive definite, else the saddle-free step."""
    held = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
    moving = free & ~held
    pair = moving[:, :, None] & moving[:, None, :]
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand_as(hessian)
    reduced = torch.where(pair, hessian, eye)
    g = torch.where(moving, gradient, torch.zeros_like(gradient))
    factor, info = torch.linalg.cholesky_ex(reduced)
    positive = info == 0
    if information is not None and not torch.all(positive):
        failed = ~positive
        reduced[failed] = torch.where(pair[failed], information[failed], eye[failed])
        factor[failed], info[failed] = torch.linalg.cholesky_ex(reduced[failed])
    solved = info == 0
    direction = torch.zeros_like(g)
    if torch.any(solved):
        direction[solved] = -_solve(factor[solved], g[solved])
    if not torch.all(solved):
        direction[~solved] = -_saddle_free_solve(reduced[~solved], g[~solved])
    direction = torch.where(moving, direction, torch.zeros_like(direction))
    edm = torch.where(positive, -0.5 * torch.sum(g * direction, dim=1), torch.inf)
    return _Step(direction, edm, positive)


def _saddle_free_solve(matrices: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``|H|^-1 g`` per row, with ``|H|`` the symmetric matrix with the absolute eigenvalues of
    ``H`` (at least :data:`FLAT` times the largest): positive definite, so ``-|H|^-1 g`` descends.
    Row by row, like :func:`_solve`. A row whose matrix has no eigendecomposition (not finite, or
    too ill-conditioned for the solver: seen on a goodness-of-fit toy of nearly empty bins) gets
    no step, so its refit ends without a valid minimum and MINUIT takes it over."""
    solutions = []
    for matrix, row in zip(matrices, rows, strict=True):
        if not (torch.isfinite(matrix).all() and torch.isfinite(row).all()):
            solutions.append(torch.zeros_like(row))
            continue
        try:
            eigenvalues, vectors = torch.linalg.eigh(matrix)
        except torch.linalg.LinAlgError:
            solutions.append(torch.zeros_like(row))
            continue
        magnitudes = eigenvalues.abs()
        magnitudes = magnitudes.clamp_min(FLAT * float(magnitudes.max()))
        solutions.append(vectors @ ((vectors.T @ row) / magnitudes))
    return torch.stack(solutions)


def _solve(factors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each row's system solved from its Cholesky factor on its own: a batched solve's rounding
    depends on the batch size, and a refit's numbers must not depend on its batch."""
    solutions = [
        torch.cholesky_solve(row[:, None], factor)[:, 0]
        for row, factor in zip(rows, factors, strict=True)
    ]
    return torch.stack(solutions)


def _line_search(
    likelihood: Likelihood,
    x: torch.Tensor,
    rows: torch.Tensor,
    direction: torch.Tensor,
    gradient: torch.Tensor,
    value: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    max_halvings: int,
) -> torch.Tensor:
    """Move ``x[rows]`` along their projected steps, halved until -2 log L decreases enough;
    ``x`` is updated in place. Returns which rows moved (the others stalled)."""
    accepted = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
    pending = torch.arange(len(rows), device=x.device)
    length = 1.0
    for _ in range(max_halvings + 1):
        if len(pending) == 0:
            break
        origin = x[rows[pending]]
        trial = torch.minimum(torch.maximum(origin + length * direction[pending], lower), upper)
        trial_value = likelihood.for_rows(rows[pending]).values(trial)
        decrease = torch.sum(gradient[pending] * (trial - origin), dim=1)
        bound = value[pending] + ARMIJO * decrease + _slack(value[pending])
        good = torch.isfinite(trial_value) & (trial_value <= bound) & (decrease < 0)
        x[rows[pending[good]]] = trial[good]
        accepted[pending[good]] = True
        pending = pending[~good]
        length *= 0.5
    return accepted


def _slack(values: torch.Tensor) -> torch.Tensor:
    """The rounding allowance on -2 log L (see :data:`ROUNDING`)."""
    return ROUNDING * values.abs().clamp_min(1.0)
