"""Exact gradient and Hessian of -2 log L (:class:`analysis.stats.likelihood.Likelihood`) for a
batch of points, by the chain rule over the model's structure.

Differentiating the whole likelihood twice with autograd costs one backward pass per parameter
through every modifier. But each modifier depends on one parameter through a one-dimensional
function (a normsys instance's log factor, a histosys parameter's weights u and v, a linear
factor's value), whose first and second derivatives autograd gives elementwise in one pass each,
and the rate of a cell (a sample in a bin) is ``r = R L N`` with

- ``R = nominal + sum_h u_h up_h + v_h down_h`` (histosys, each term of one parameter),
- ``L`` the product of the linear factors (normfactor, lumi, staterror, shapesys, shapefactor),
- ``N = exp(sum of the normsys log factors)``, ``a = grad log N``, ``b`` its (diagonal) Hessian.

With ``G = grad L + L a`` the product rule gives

- ``grad r = L N grad R + R N G``,
- ``Hess r = L N diag(R'') + N (grad R G^T + G grad R^T) + R N (Hess L + G a^T + a G^T - L a a^T
  + L diag(b))``,

and -2 log L = sum over bins of ``2 (lambda - n log lambda)`` plus the constraints has gradient
``sum_b w_b J_b`` and Hessian ``sum_b (2 n_b / lambda_b^2) J_b J_b^T + sum_cells w Hess r`` plus
the constraints' (diagonal) terms, where ``J_b`` sums ``grad r`` over the bin's cells and
``w_b = 2 (1 - n_b / lambda_b)``. The tests hold the result to autograd's Hessian of
:meth:`~analysis.stats.likelihood.Likelihood.twice_nll`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from analysis.stats.likelihood import (
    Likelihood,
    histosys_weights,
    normsys_log,
    product,
    rowwise,
)


class _Cells(NamedTuple):
    """Per cell ``(k, cells)``: the rate's three parts, and their first derivatives by parameter
    ``(k, cells, npars)`` (``a`` is grad log N)."""

    additive: torch.Tensor
    linear: torch.Tensor
    normsys: torch.Tensor
    grad_additive: torch.Tensor
    grad_linear: torch.Tensor
    a: torch.Tensor


def derivatives(
    likelihood: Likelihood, pars: torch.Tensor, information: bool = False
) -> tuple[torch.Tensor, ...]:
    """Values ``(k,)``, gradients ``(k, npars)`` and Hessians ``(k, npars, npars)`` of -2 log L at
    the points ``pars`` ``(k, npars)``; with ``information`` also the Fisher information of -2 log
    L there, ``sum_b (2 / lambda_b) J_b J_b^T`` plus the constraints' curvature, which unlike the
    Hessian is positive semi-definite everywhere."""
    k, n = pars.shape
    normsys, u, v = _modifiers(likelihood, pars)
    cells = _cell_parts(likelihood, pars, normsys, u, v)
    rates = cells.additive * cells.linear * cells.normsys
    expected = likelihood.bins(rates)
    observed = likelihood.observed
    ratio = torch.where(observed > 0, observed / expected, 0.0)  # xlogy(0, x) = 0
    slope, curvature = 2.0 - 2.0 * ratio, 2.0 * ratio / expected  # per bin (k, bins)
    weight = slope[:, likelihood.cell_bin]  # (k, cells)
    grad_g = cells.grad_linear + cells.linear[..., None] * cells.a  # G
    jacobian = cells.normsys[..., None] * (
        cells.linear[..., None] * cells.grad_additive + cells.additive[..., None] * grad_g
    )
    jacobian = likelihood.bins(jacobian.transpose(1, 2)).transpose(1, 2)  # (k, bins, npars)
    # a sum and per-matrix products rather than einsum, whose kernels depend on the batch: a
    # refit's numbers must not depend on the refits it is batched with
    gradient = (slope[..., None] * jacobian).sum(dim=1)
    hessian = torch.bmm((jacobian * curvature[..., None]).transpose(1, 2), jacobian)
    fisher = None
    if information:
        fisher = torch.bmm((jacobian * (2.0 / expected)[..., None]).transpose(1, 2), jacobian)
    scale = weight * cells.normsys  # w N
    mixed = scale[..., None] * cells.grad_additive + (scale * cells.additive)[..., None] * cells.a
    product = torch.bmm(grad_g.transpose(1, 2), mixed)
    hessian += product + product.transpose(1, 2)
    hessian -= torch.bmm((cells.a * (weight * rates)[..., None]).transpose(1, 2), cells.a)
    _add_linear_pairs(likelihood, hessian, scale * cells.additive, pars)
    diagonal = hessian.diagonal(dim1=1, dim2=2)
    # histosys second derivatives, L N (u'' up + v'' down)
    linear_normsys = weight * cells.linear * cells.normsys
    curvature_h = u[2] * rowwise(linear_normsys, likelihood.delta_up.T)
    curvature_h += v[2] * rowwise(linear_normsys, likelihood.delta_down.T)
    diagonal.index_add_(1, likelihood.histosys_par, curvature_h)
    # normsys second derivatives, r b
    entries = likelihood.normsys_entry
    curvature_n = (weight * rates)[:, likelihood.normsys_cell] * normsys[2][:, entries]
    diagonal.index_add_(1, likelihood.normsys_par[entries], curvature_n)
    _add_constraints(likelihood, pars, gradient, diagonal)
    value = likelihood.from_expected(pars, expected)
    if fisher is None:
        return value, gradient, hessian
    _add_constraint_curvature(likelihood, pars, fisher.diagonal(dim1=1, dim2=2))
    return value, gradient, hessian, fisher


def rate_jacobians(likelihood: Likelihood, pars: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Expected events per cell ``(k, cells)`` at the points ``pars`` ``(k, npars)``, and their
    gradients ``(k, cells, npars)`` (``grad r`` of the module's docstring)."""
    cells = _cell_parts(likelihood, pars, *_modifiers(likelihood, pars))
    grad_g = cells.grad_linear + cells.linear[..., None] * cells.a
    jacobian = cells.normsys[..., None] * (
        cells.linear[..., None] * cells.grad_additive + cells.additive[..., None] * grad_g
    )
    return cells.additive * cells.linear * cells.normsys, jacobian


def _modifiers(likelihood: Likelihood, pars: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], ...]:
    """Values and first and second derivatives of the normsys log factors and of the histosys
    weights u and v at ``pars``."""
    normsys = _elementwise(lambda x: normsys_log(x, likelihood), pars[:, likelihood.normsys_par])
    code = likelihood.histosys_code
    alpha = pars[:, likelihood.histosys_par]
    u = _elementwise(lambda x: histosys_weights(x, code)[0], alpha)
    v = _elementwise(lambda x: histosys_weights(x, code)[1], alpha)
    return normsys, u, v


def _elementwise(
    function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An elementwise function's values and first and second derivatives at ``x``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = function(x)
        (first,) = torch.autograd.grad(
            y.sum(), x, create_graph=True, allow_unused=True, materialize_grads=True
        )
        second = torch.zeros_like(x)
        if first.requires_grad:
            (second,) = torch.autograd.grad(
                first.sum(), x, allow_unused=True, materialize_grads=True
            )
    return y.detach(), first.detach(), second.detach()


def _cell_parts(
    likelihood: Likelihood,
    pars: torch.Tensor,
    normsys: tuple[torch.Tensor, ...],
    u: tuple[torch.Tensor, ...],
    v: tuple[torch.Tensor, ...],
) -> _Cells:
    """R, L, N of every cell and the first derivatives of R, L and log N."""
    k, n = pars.shape
    n_cells = len(likelihood.nominal)
    log_n = likelihood.spread_normsys(normsys[0])
    additive = likelihood.additive(u[0], v[0])
    grad_additive = pars.new_zeros(k, n_cells, n)
    slopes = u[1][:, :, None] * likelihood.delta_up + v[1][:, :, None] * likelihood.delta_down
    grad_additive[:, :, likelihood.histosys_par] = slopes.transpose(1, 2)
    a = pars.new_zeros(k, n_cells * n)
    a.index_add_(1, likelihood.normsys_flat, normsys[1][:, likelihood.normsys_entry])
    factors = likelihood.linear_factors(pars)
    linear = product(factors, pars.new_ones(k, n_cells))
    grad_linear = pars.new_zeros(k, n_cells * n)
    for slot, (cells, flat) in enumerate(zip(likelihood.slot_cells, likelihood.slot_flat,
                                             strict=True)):  # fmt: skip
        others = product(factors[:slot] + factors[slot + 1 :], pars.new_ones(k, n_cells))
        grad_linear.index_add_(1, flat, others[:, cells])
    return _Cells(
        additive,
        linear,
        log_n.exp(),
        grad_additive,
        grad_linear.view(k, n_cells, n),
        a.view(k, n_cells, n),
    )


def _add_linear_pairs(
    likelihood: Likelihood, hessian: torch.Tensor, weight: torch.Tensor, pars: torch.Tensor
) -> None:
    """Add sum over cells of ``weight`` times the Hessian of L: for each pair of slots, the
    product of the other factors at (parameter of one slot, parameter of the other)."""
    k, n = pars.shape
    factors = likelihood.linear_factors(pars)
    flat = hessian.view(k, n * n)
    slots = likelihood.slots
    for first in range(len(slots)):
        for second in range(first + 1, len(slots)):
            others = [f for i, f in enumerate(factors) if i not in (first, second)]
            value = weight * product(others, torch.ones_like(weight))
            used = (slots[first] < n) & (slots[second] < n)
            i, j = slots[first][used], slots[second][used]
            flat.index_add_(1, i * n + j, value[:, used])
            flat.index_add_(1, j * n + i, value[:, used])


def _add_constraints(
    likelihood: Likelihood, pars: torch.Tensor, gradient: torch.Tensor, diagonal: torch.Tensor
) -> None:
    """Add the constraint terms' gradients and (diagonal) Hessians: Gaussian
    ``((aux - x) / sigma)^2`` and Poisson ``2 (x tau - aux log(x tau))``."""
    gauss, sigma2 = likelihood.gauss, likelihood.sigma**2
    gradient.index_add_(1, gauss, 2.0 * (pars[:, gauss] - likelihood.gauss_aux) / sigma2)
    poisson, aux = likelihood.poisson, likelihood.poisson_aux
    gradient.index_add_(1, poisson, 2.0 * (likelihood.factor - aux / pars[:, poisson]))
    _add_constraint_curvature(likelihood, pars, diagonal)


def _add_constraint_curvature(
    likelihood: Likelihood, pars: torch.Tensor, diagonal: torch.Tensor
) -> None:
    """Add the constraint terms' (diagonal) second derivatives."""
    gauss, sigma2 = likelihood.gauss, likelihood.sigma**2
    diagonal.index_add_(1, gauss, (2.0 / sigma2).expand(len(pars), -1))
    poisson, aux = likelihood.poisson, likelihood.poisson_aux
    diagonal.index_add_(1, poisson, 2.0 * aux / pars[:, poisson] ** 2)
