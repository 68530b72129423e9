"""-2 log L with the per-bin staterror parameters profiled analytically (Barlow-Beeston lite), for
Newton steps on the other parameters only.

A staterror parameter gamma of main bin b multiplies every sample of that bin that carries it, and
pyhf constrains it by a Gaussian of width sigma (the bin's relative MC uncertainty) around its
auxiliary datum a (1 for the data, drawn around the post-fit value for a toy). With every other
parameter theta held, the bin's expectation is linear in it, ``nu = gamma A + B`` (A: the cells
that carry it, at gamma = 1; B: the others), and its terms of -2 log L,
``2 (nu - n log nu) + (gamma - a)^2 / sigma^2``, are convex in gamma. Their derivative times
``nu sigma^2 / 2`` is the quadratic

    A gamma^2 + (B - a A + A^2 sigma^2) gamma + A sigma^2 (B - n) - a B = 0,

which is ``-A sigma^2 n`` where nu = 0: for A > 0 its larger root is the minimum, for A < 0
(negative event weights) the smaller, and one formula gives both. Without events (n = 0) the
terms are a parabola in gamma wherever nu is, with its minimum at ``a - A sigma^2``. Clipped to
the parameter's bounds it is the minimum there (convexity).

On a pair's goodness-of-fit test these are about 100 of its 121 parameters: the Newton steps
(:mod:`analysis.stats.newton`) move the ~20 others, and a toy whose empty or nearly empty bin
drives a gamma to its lower bound (where Newton steps on all parameters crawl along the bound,
then leave the toy to MINUIT) has its gamma there in closed form.

The profiled -2 log L ``F(theta) = f(theta, gamma(theta))`` has the gradient of f in theta at
gamma(theta) (envelope theorem: df/dgamma vanishes there, or gamma stays at its bound) and the
Hessian ``H_tt - H_tg diag(H_gg)^-1 H_gt`` (the Schur complement: the gammas' block is diagonal,
each lives in its own bin; a gamma held at a bound does not move with theta and adds nothing);
the Fisher information of Fisher scoring is reduced the same way. Both come from the exact
derivatives of the full likelihood (:mod:`analysis.stats.hessian`) at (theta, gamma(theta)).

A staterror parameter is profiled where it floats and is the only one of its bin (two staterror
modifiers on one bin would couple their gammas); the others stay with theta. Rows never mix, as
in :class:`analysis.stats.likelihood.Likelihood`.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import numpy as np
import torch

from analysis.stats import newton
from analysis.stats.likelihood import Likelihood


def profiled_parameters(model: Any, likelihood: Likelihood, free: np.ndarray) -> np.ndarray:
    """The parameters :class:`Profiled` solves for: every floating staterror parameter that is the
    only floating staterror parameter of the main bin it multiplies (sorted indices)."""
    config = model.config
    candidates = [
        index
        for name, kind in config.modifiers
        if kind == "staterror"
        for index in range(config.par_slice(name).start, config.par_slice(name).stop)
        if free[index]
    ]
    carried = _carried(likelihood, np.asarray(candidates, dtype=np.int64))
    bins = {index: set(carried.bins[carried.parameter == index].tolist()) for index in candidates}
    per_bin: dict[int, int] = {}
    for index in candidates:
        for b in bins[index]:
            per_bin[b] = per_bin.get(b, 0) + 1
    kept = [
        index
        for index in candidates
        if len(bins[index]) == 1 and per_bin[next(iter(bins[index]))] == 1
    ]
    return np.asarray(kept, dtype=np.int64)


class _Carried:
    """Per cell, the candidate parameter it carries (-1: none) and its main bin."""

    def __init__(self, parameter: np.ndarray, bins: np.ndarray):
        self.parameter, self.bins = parameter, bins


def _carried(likelihood: Likelihood, parameters: np.ndarray) -> _Carried:
    """Which of ``parameters`` (multiplying parameters of the likelihood) each cell carries."""
    cell_bin = likelihood.cell_bin.cpu().numpy()
    parameter = np.full(len(cell_bin), -1, dtype=np.int64)
    for slot in likelihood.slots:
        values = slot.cpu().numpy()
        hit = np.isin(values, parameters)
        parameter[hit] = values[hit]
    return _Carried(parameter, cell_bin)


class Profiled:
    """-2 log L as a function of the parameters other than ``gammas``, each gamma at its minimum
    given the others (the module's docstring). It offers what :func:`analysis.stats.newton.
    minimize` uses of a :class:`~analysis.stats.likelihood.Likelihood`: :meth:`values`,
    :meth:`derivatives`, :meth:`for_rows` and :meth:`to_tensor`, on points ``(k, npars)`` of the
    other parameters (in their order in the full model); :meth:`expand` gives the full point.

    The derivatives are those of the likelihood of the other parameters alone
    (:meth:`~analysis.stats.likelihood.Likelihood.holding`, each gamma a factor of its cells):
    their cost grows with the parameters it moves, ~20 rather than ~120 on a pair's test.

    Args:
        likelihood: the full likelihood (one data set, or one per row).
        gammas: the staterror parameters to profile (:func:`profiled_parameters`).
        bounds: ``(npars, 2)`` bounds of every parameter of the full model.
    """

    def __init__(self, likelihood: Likelihood, gammas: np.ndarray, bounds: np.ndarray):
        self.full, self.device = likelihood, likelihood.device
        gammas = np.asarray(gammas, dtype=np.int64)
        self.reduced = likelihood.holding(gammas)
        self.npars = self.reduced.npars
        carried = _carried(likelihood, gammas)
        order = {int(index): i for i, index in enumerate(gammas)}
        cell_gamma = np.asarray([order.get(int(p), -1) for p in carried.parameter], dtype=np.int64)
        gamma_bin = [int(carried.bins[carried.parameter == index][0]) for index in gammas]
        gauss = likelihood.gauss.cpu().numpy()
        position = [int(np.flatnonzero(gauss == index)[0]) for index in gammas]
        self.gammas = likelihood._index(gammas)
        self.others = likelihood._index(np.setdiff1d(np.arange(likelihood.npars), gammas))
        self.gamma_bin = likelihood._index(gamma_bin)
        self.carrying = likelihood._index(np.flatnonzero(cell_gamma >= 0))
        self.cell_gamma = likelihood._index(cell_gamma[cell_gamma >= 0])
        self.carries = likelihood.to_tensor(cell_gamma >= 0)
        self.position = likelihood._index(position)
        self.lower = likelihood.to_tensor(np.asarray(bounds, dtype=float)[gammas, 0])
        self.upper = likelihood.to_tensor(np.asarray(bounds, dtype=float)[gammas, 1])
        self.variance = likelihood.sigma[self.position] ** 2

    def for_rows(self, rows: torch.Tensor) -> Profiled:
        """The profiled likelihood of the points ``rows`` of a batch (see
        :meth:`~analysis.stats.likelihood.Likelihood.for_rows`)."""
        if not self.full.per_row:
            return self
        subset = copy.copy(self)
        subset.full, subset.reduced = self.full.for_rows(rows), self.reduced.for_rows(rows)
        return subset

    def to_tensor(self, values: Any) -> torch.Tensor:
        """``values`` as a float64 tensor on the likelihood's device."""
        return self.full.to_tensor(values)

    def expand(self, pars: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The full points ``(k, npars of the model)``: ``pars`` with every gamma at its
        minimum."""
        with torch.no_grad():
            pars = self.to_tensor(pars)
            return self._profile(pars, self.reduced.rates(pars)).full

    def values(self, pars: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The profiled -2 log L at a batch of points ``(k, npars)``."""
        with torch.no_grad():
            pars = self.to_tensor(pars)
            point = self._profile(pars, self.reduced.rates(pars))
            return self.full.from_expected(point.full, point.expected)

    def derivatives(
        self, pars: np.ndarray | torch.Tensor, information: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Values ``(k,)``, gradients ``(k, npars)`` and Hessians ``(k, npars, npars)`` of the
        profiled -2 log L, and with ``information`` its Fisher information (module docstring)."""
        from analysis.stats.hessian import rate_jacobians

        with torch.no_grad():
            pars = self.to_tensor(pars)
            rates, jacobian = rate_jacobians(self.reduced, pars)  # every gamma at 1
            point = self._profile(pars, rates)
            at = copy.copy(self.reduced)
            at.cell_factor = torch.ones_like(rates)
            at.cell_factor[:, self.carrying] = point.gamma[:, self.cell_gamma]
            _, gradient, *matrices = at.derivatives(pars, information)
            value = self.full.from_expected(point.full, point.expected)
            # the derivatives of A and B (the module's docstring) in the other parameters
            carried = self._bins(jacobian * self.carries[:, None])
            rest = self._bins(jacobian * (1.0 - self.carries[:, None]))
            slope = point.gamma[..., None] * carried + rest  # of nu
            nu = point.gamma * point.carried + point.rest
            observed = self.full.observed[..., self.gamma_bin]
            ratio = torch.where(observed > 0, observed / nu, 0.0)
            constraint = 2.0 / self.variance
            # d2f / dgamma2 and d2f / dgamma dtheta; for the Fisher information (2 / nu) J J^T
            # with J = A for gamma and the slope of nu for theta
            curvatures = [2.0 * point.carried**2 * ratio / nu + constraint]
            mixed = [
                2.0 * (1.0 - ratio)[..., None] * carried
                + (2.0 * point.carried * ratio / nu)[..., None] * slope
            ]
            if information:
                curvatures.append(2.0 * point.carried**2 / nu + constraint)
                mixed.append((2.0 * point.carried / nu)[..., None] * slope)
            moving = (point.gamma > self.lower) & (point.gamma < self.upper)
            reduced = [
                _schur(matrix, cross, curvature, moving)
                for matrix, cross, curvature in zip(matrices, mixed, curvatures, strict=True)
            ]
            return value, gradient, *reduced

    def _bins(self, jacobian: torch.Tensor) -> torch.Tensor:
        """Per profiled gamma, the sum of ``(k, cells, npars)`` over its bin's cells."""
        return self.full.bins(jacobian.transpose(1, 2)).transpose(1, 2)[:, self.gamma_bin]

    def _profile(self, pars: torch.Tensor, rates: torch.Tensor) -> _Point:
        """The gammas at their minimum given ``pars`` and the cells' ``rates`` at gamma = 1."""
        carried = self.full.bins(rates * self.carries)[:, self.gamma_bin]
        expected = self.full.bins(rates * (1.0 - self.carries))
        rest = expected[:, self.gamma_bin]
        observed = self.full.observed[..., self.gamma_bin]
        aux = self.full.gauss_aux[..., self.position]
        gamma = minimum(carried, rest, observed, aux, self.variance)
        gamma = torch.minimum(torch.maximum(gamma, self.lower), self.upper)
        full = pars.new_empty(len(pars), self.full.npars)
        full[:, self.others], full[:, self.gammas] = pars, gamma
        expected[:, self.gamma_bin] = gamma * carried + rest
        return _Point(full, expected, gamma, carried, rest)


class _Point(NamedTuple):
    """A point of the profiled likelihood: the full parameters, the expected events per main
    bin, and per profiled gamma its value and A and B (the module's docstring), ``(k, gammas)``."""

    full: torch.Tensor
    expected: torch.Tensor
    gamma: torch.Tensor
    carried: torch.Tensor
    rest: torch.Tensor


def _schur(
    matrix: torch.Tensor, mixed: torch.Tensor, curvature: torch.Tensor, moving: torch.Tensor
) -> torch.Tensor:
    """``matrix`` ``(k, n, n)`` of the other parameters minus what the moving gammas take up:
    ``mixed`` ``(k, gammas, n)`` their cross terms, ``curvature`` ``(k, gammas)`` their own."""
    usable = moving & (curvature > 0)
    inverse = torch.where(usable, 1.0 / torch.where(usable, curvature, 1.0), 0.0)
    # one product per row: a batched product's rounding depends on the batch size (measured
    # here), and a fit's numbers must not depend on the fits it is batched with
    scaled = mixed * inverse[..., None]
    taken = [row.T @ weighted for row, weighted in zip(mixed, scaled, strict=True)]
    return matrix - torch.stack(taken) if taken else matrix


def minimum(
    carried: torch.Tensor,
    rest: torch.Tensor,
    observed: torch.Tensor,
    aux: torch.Tensor,
    variance: torch.Tensor,
) -> torch.Tensor:
    """The gamma minimising ``2 (nu - n log nu) + (gamma - a)^2 / sigma^2`` with ``nu = gamma A +
    B`` (``carried`` A, ``rest`` B, ``observed`` n, ``aux`` a, ``variance`` sigma^2), unbounded:
    the larger root of the module docstring's quadratic, in the form that does not cancel."""
    linear = rest - aux * carried + carried * carried * variance
    constant = carried * variance * (rest - observed) - aux * rest
    root = torch.sqrt(torch.clamp(linear * linear - 4.0 * carried * constant, min=0.0))
    positive = linear > 0
    # -b + sqrt(D) cancels when b > 0: there the root is 2 c / (-b - sqrt(D)), whose denominator
    # is then negative; with A = 0 (no cell carries the gamma) it is a, as the constraint alone
    denominator = torch.where(positive, -linear - root, 2.0 * carried)
    numerator = torch.where(positive, 2.0 * constant, root - linear)
    safe = denominator != 0
    root = torch.where(safe, numerator / torch.where(safe, denominator, 1.0), aux.expand_as(rest))
    # without events the Poisson term is linear in gamma (2 nu, whatever nu's sign: negative
    # weights can make A < 0), so the minimum is the constraint's centre moved by the slope;
    # with events the root above is the one where nu > 0, for A of either sign
    return torch.where(observed > 0, root, aux - carried * variance)


def minimize(
    likelihood: Likelihood,
    gammas: np.ndarray,
    starts: np.ndarray,
    free: np.ndarray,
    bounds: np.ndarray,
    settings: newton.NewtonSettings,
) -> newton.BatchMinimum:
    """:func:`analysis.stats.newton.minimize` with ``gammas`` profiled: Newton steps on the other
    parameters (their edm, positive definite Hessian and bounds decide validity), the gammas at
    their minimum given them. Arguments and result over every parameter, as there (the starts of
    the gammas are not used)."""
    profiled = Profiled(likelihood, gammas, bounds)
    others = profiled.others.cpu().numpy()
    found = newton.minimize(profiled, starts[:, others], free[:, others], bounds[others], settings)
    values = profiled.expand(found.values).cpu().numpy()
    return found._replace(values=values)
