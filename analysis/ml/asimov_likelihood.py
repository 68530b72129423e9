"""Binned Poisson likelihood of histogram templates and its Fisher information on Asimov data.

The likelihood has the POI ``mu`` (scaling the signal processes) and one nuisance ``eta_j`` per
systematic, with a unit Gaussian constraint and the asymmetric linear interpolation
``max(eta, 0) * (up - nom) + min(eta, 0) * (nom - down)`` (pyhf's ``histosys`` code0). It is the
same as pyhf's for ``normfactor`` + ``histosys`` (code0) + Gaussian constraints, checked against
pyhf in the tests and ``bench/uncertainty_aware.py``.

Why not pyhf's torch backend: a pyhf model is built from a JSON specification of plain numbers, so
the templates, which carry the autograd graph back to the network, cannot be put into it without
re-implementing the model build.

The piecewise-linear interpolation has a kink at ``eta = 0``, where the Fisher information is
evaluated, so the Hessian there is one-sided: :func:`asimov_fisher` computes it for ``eta -> 0+``
(each nuisance moving the templates by ``eta * (up - nom)``) or ``eta -> 0-`` (``eta * (nom -
down)``).
"""

from __future__ import annotations

import torch

#: Smallest expected bin count used in logarithms and divisions: an empty bin (no events of any
#: process) then contributes nothing instead of 0/0.
_MIN_YIELD = 1e-9


def expected_yields(
    params: torch.Tensor,
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str | None = None,
) -> torch.Tensor:
    """Expected counts per bin for ``params = (mu, eta_1, ..., eta_S)``.

    Args:
        params: ``(1 + S,)`` signal strength and nuisance parameters.
        nominal: ``(P, B)`` nominal templates per process.
        up: ``(S, P, B)`` up templates per systematic and process.
        down: ``(S, P, B)`` down templates.
        signal: ``(P,)`` boolean mask of the processes scaled by ``mu``.
        side: ``None`` for the interpolation ``max(eta,0)(up-nom) + min(eta,0)(nom-down)``;
            ``"up"`` or ``"down"`` for its linear continuation from ``eta >= 0`` (``eta(up-nom)``)
            or ``eta <= 0`` (``eta(nom-down)``), smooth at 0 for one-sided derivatives.

    Returns:
        ``(B,)`` expected counts summed over processes.
    """
    mu, eta = params[0], params[1:]
    if side is None:
        delta = torch.einsum("s,spb->pb", eta.clamp(min=0), up - nominal[None]) + torch.einsum(
            "s,spb->pb", eta.clamp(max=0), nominal[None] - down
        )
    elif side == "up":
        delta = torch.einsum("s,spb->pb", eta, up - nominal[None])
    elif side == "down":
        delta = torch.einsum("s,spb->pb", eta, nominal[None] - down)
    else:
        raise ValueError(f"side must be None, 'up' or 'down', not {side!r}")
    per_process = nominal + delta
    scale = torch.where(signal, mu, torch.ones_like(mu))
    return (scale[:, None] * per_process).sum(dim=0)


def twice_nll(
    params: torch.Tensor,
    data: torch.Tensor,
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str | None = None,
) -> torch.Tensor:
    """-2 ln L of the binned Poisson likelihood with unit Gaussian constraints on the nuisances.

    Constant terms (``ln d!``, the Gaussian normalisation) are left out, so differences between
    parameter points are those of pyhf's ``twice_nll``.

    Args:
        params: ``(1 + S,)`` signal strength and nuisance parameters.
        data: ``(B,)`` observed counts (the Asimov counts for expected results).
        nominal, up, down, signal, side: as in :func:`expected_yields`.
    """
    expected = expected_yields(params, nominal, up, down, signal, side).clamp_min(_MIN_YIELD)
    poisson = (expected - data * torch.log(expected)).sum()
    constraint = 0.5 * (params[1:] ** 2).sum()
    return 2.0 * (poisson + constraint)


def asimov_point(
    nominal: torch.Tensor, up: torch.Tensor, down: torch.Tensor, signal: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameter point ``(mu = 1, eta = 0)`` and its expected counts, the Asimov dataset.

    Args:
        nominal, up, down, signal: as in :func:`expected_yields`.
    """
    point = torch.zeros(1 + up.shape[0], dtype=nominal.dtype, device=nominal.device)
    point[0] = 1.0
    return point, expected_yields(point, nominal, up, down, signal)


def asimov_fisher(
    nominal: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    signal: torch.Tensor,
    side: str = "up",
    create_graph: bool = True,
) -> torch.Tensor:
    """Fisher information of ``(mu, eta)`` on the Asimov dataset at ``mu = 1, eta = 0``.

    The Hessian of ``-ln L`` from autograd, one-sided in the nuisances (the interpolation has a
    kink at 0). The Asimov counts are the expected counts of the same templates (not detached),
    so the result and its gradient with respect to the templates are those of the expected Fisher
    information ``J^T diag(1/nu) J + 1_eta``.

    Args:
        nominal, up, down, signal: as in :func:`expected_yields`.
        side: ``"up"`` (``eta -> 0+``) or ``"down"`` (``eta -> 0-``).
        create_graph: keep the graph so that the result can be differentiated (training).

    Returns:
        ``(1 + S, 1 + S)`` symmetric matrix.
    """
    point, asimov = asimov_point(nominal, up, down, signal)

    def half_twice_nll(params: torch.Tensor) -> torch.Tensor:
        return 0.5 * twice_nll(params, asimov, nominal, up, down, signal, side)

    return torch.autograd.functional.hessian(half_twice_nll, point, create_graph=create_graph)


def poi_variance(fisher: torch.Tensor) -> torch.Tensor:
    """``(F^-1)_{mu,mu}``: the expected variance of the signal strength (first parameter)."""
    unit = torch.zeros(fisher.shape[0], dtype=fisher.dtype, device=fisher.device)
    unit[0] = 1.0
    return torch.linalg.solve(fisher, unit)[0]


def poi_nuisance_correlation(fisher: torch.Tensor) -> torch.Tensor:
    """Correlations of ``mu`` with each nuisance from the inverse Fisher information, ``(S,)``."""
    covariance = torch.linalg.inv(fisher)
    sigma = torch.sqrt(torch.diagonal(covariance))
    return covariance[0, 1:] / (sigma[0] * sigma[1:])
