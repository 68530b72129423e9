"""Minimising twice the negative log-likelihood of a pyhf model with iminuit (MIGRAD and HESSE).

A fit that does not converge is retried along a fixed chain (see :func:`minimize`), and whether it
finally converged is always reported. Refits with some parameters held fixed (impacts, scan
points) start from the nominal best fit moved along its covariance (:func:`profile_start`): for a
Gaussian likelihood that is exactly the conditional minimum, so MIGRAD only polishes it.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import iminuit
import numpy as np
import pyhf

from analysis.stats import model as model_utils
from analysis.stats.results import Attempt

log = logging.getLogger(__name__)

#: Finite-difference step of the gradient, relative to the parameter's scale (its constraint width
#: or 10% of its initial value): far above rounding (-2 log L is known to ~1e-13 relative) and far
#: below the curvature scale, so the central difference is accurate to ~1e-8 relative.
GRADIENT_STEP = 1e-4

#: Most points evaluated in one batched call of the model by :func:`gradient_function`. Larger
#: batches stop paying once the batched tensors outgrow the CPU caches: on the analysis's own
#: workspace (6 channels, 38 parameters) a point costs 0.06 ms in batches of 16 but 0.17 ms in
#: batches of 64, as much as one at a time; on a smaller workspace 16 is as fast as 64.
MAX_BATCH = 16

#: Batched copies of models for the gradient (see :func:`gradient_function`), built once per model.
_BATCHED_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: How the last attempt of the fallback chain starts.
RESTART = "workspace initial values"


class FitSettings(NamedTuple):
    """Minimiser settings (config ``inference.fit``, and ``inference.refits`` for the refits)."""

    strategy: int = 1
    refit_strategy: int = 0
    tolerance: float = 1e-4
    max_calls: int = 100_000
    batched_gradient: bool = True
    batched_refits: bool = True  # config inference.refits.batched
    device: str = "cpu"  # config inference.refits.device


class Minimum(NamedTuple):
    """Outcome of :func:`minimize`; ``uncertainties``/``covariance`` only when HESSE ran."""

    values: np.ndarray
    uncertainties: np.ndarray | None
    covariance: np.ndarray | None
    twice_nll: float
    converged: bool
    attempts: tuple[Attempt, ...]


class Anchor(Protocol):
    """Where refits start from: a minimum's parameter values and their covariance (a
    :class:`~analysis.stats.results.FitResults`, or a :class:`Minimum` that ran HESSE)."""

    @property
    def values(self) -> np.ndarray: ...

    @property
    def covariance(self) -> np.ndarray: ...


class _Snapshot(NamedTuple):
    """Where one attempt stopped."""

    twice_nll: float
    values: np.ndarray
    covariance: np.ndarray | None
    errors: np.ndarray


def fit_settings(settings: Mapping[str, Any]) -> FitSettings:
    """The minimiser settings from a stage's settings: the ``fit`` entry, and the ``refits`` entry
    (``batched``, ``device``) where the stage has one; defaults where absent."""
    fields = dict(settings.get("fit") or {})
    refits = settings.get("refits") or {}
    fields.update({f"{key}_refits" if key == "batched" else key: refits[key] for key in refits})
    return FitSettings(**{key: fields[key] for key in FitSettings._fields if key in fields})


def twice_nll_function(model: Any, data: np.ndarray) -> Callable[[np.ndarray], float]:
    """Twice the negative log-likelihood of ``data`` as a function of the parameters."""
    logpdf = model.logpdf

    def twice_nll(pars: np.ndarray) -> float:
        return -2.0 * float(logpdf(pars, data)[0])

    return twice_nll


def gradient_function(model: Any, data: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The gradient of twice the NLL by central differences, in batched evaluations.

    MIGRAD's own numerical gradient evaluates the likelihood twice per free parameter, one point
    at a time; evaluating the 2 x npars shifted points in a few calls of a batched copy of the
    model (pyhf's ``batch_size``, vectorised in numpy) gives the same derivative several times
    faster. Batches hold at most :data:`MAX_BATCH` points, which bounds the memory of the batched
    model for workspaces with hundreds of parameters.
    """
    npars = model.config.npars
    batch_size = min(2 * npars, MAX_BATCH)
    batched = _BATCHED_MODELS.get(model)
    if batched is None:
        batched = pyhf.pdf.Model(
            model.spec,
            batch_size=batch_size,
            validate=False,
            poi_name=None,
            modifier_settings=model.config.modifier_settings,
        )
        _BATCHED_MODELS[model] = batched
    steps = GRADIENT_STEP * default_steps(model)
    shifts = np.concatenate([np.diag(steps), -np.diag(steps)])
    # pad to whole batches (the padding rows are evaluated and dropped)
    n_batches = -(-len(shifts) // batch_size)
    shifts = np.concatenate([shifts, np.zeros((n_batches * batch_size - len(shifts), npars))])

    def gradient(pars: np.ndarray) -> np.ndarray:
        points = np.asarray(pars) + shifts
        values = np.concatenate(
            [
                np.asarray(batched.logpdf(points[i : i + batch_size], data), dtype=float)
                for i in range(0, len(points), batch_size)
            ]
        )
        return -2.0 * (values[:npars] - values[npars : 2 * npars]) / (2.0 * steps)

    return gradient


def default_steps(model: Any) -> np.ndarray:
    """Initial MIGRAD step sizes: the constraint width, or 10% of a free parameter's scale."""
    widths = model_utils.prefit_uncertainties(model)
    inits = np.abs(np.asarray(model.config.suggested_init(), dtype=float))
    return np.where(widths > 0, widths, 0.1 * np.maximum(inits, 1.0))


def minimize(
    model: Any,
    data: np.ndarray,
    settings: FitSettings,
    *,
    start: Sequence[float] | None = None,
    steps: Sequence[float] | None = None,
    fixed: Sequence[bool] | None = None,
    strategy: int | None = None,
    hesse: bool = False,
    bounds: Sequence[Sequence[float]] | None = None,
    curvature: Sequence[float] | None = None,
) -> Minimum:
    """Minimise twice the NLL with MIGRAD (and HESSE), retrying when it does not converge.

    The fallback chain, stopped at the first success: (1) the requested strategy and tolerance
    from ``start``; (2) strategy 2 continuing from where (1) stopped; (3) strategy 2 restarted
    from the workspace's initial values with a ten times looser tolerance. Success means a valid
    MIGRAD minimum and, with ``hesse``, an accurate covariance matrix that did not have to be
    forced positive definite. If all fail the lowest minimum found is returned with
    ``converged=False``.

    Args:
        model: the pyhf model.
        data: main and auxiliary data.
        settings: tolerance, call limit and default strategy.
        start: initial values (default: the workspace's); fixed parameters stay at these.
        steps: initial step sizes (default: :func:`default_steps`).
        fixed: parameters to hold constant in addition to those fixed in the workspace.
        strategy: MINUIT strategy of the first attempt (default ``settings.strategy``).
        hesse: compute uncertainties and covariance with HESSE.
        bounds: parameter bounds (default: the workspace's).
        curvature: known second derivatives of the objective (the Hessian's diagonal), used
            with the batched gradient to seed MIGRAD instead of computing them numerically.

    Returns:
        The minimum, with every attempt made.
    """
    suggested = np.asarray(model.config.suggested_init(), dtype=float)
    start = suggested if start is None else np.asarray(start, dtype=float)
    frozen = ~model_utils.free_mask(model, fixed)
    steps = default_steps(model) if steps is None else np.asarray(steps, dtype=float)
    minuit = _new_minuit(model, data, settings, start, frozen, steps, bounds, curvature)
    first = settings.strategy if strategy is None else strategy
    chain = [(first, 1, "start"), (2, 1, "continued"), (2, 10, RESTART)]
    attempts: list[Attempt] = []
    snapshots: list[_Snapshot] = []
    for attempt_strategy, looser, how in chain:
        tolerance = looser * settings.tolerance
        if how == RESTART:
            # a fresh start away from wherever the previous attempts got stuck; fixed
            # parameters keep the values they were fixed at
            minuit.values = np.where(frozen, start, suggested)
            minuit.errors = default_steps(model)
        attempt, snapshot = _migrad(minuit, attempt_strategy, tolerance, how, settings, hesse)
        attempts.append(attempt)
        snapshots.append(snapshot)
        if attempt.valid:
            break
        log.warning(
            "fit attempt %d (strategy %d, tolerance %g, from %s) did not converge: %s",
            len(attempts), attempt_strategy, tolerance, how, _fmin_problems(minuit),
        )  # fmt: skip
    return _outcome(attempts, snapshots, frozen)


def _new_minuit(
    model: Any,
    data: np.ndarray,
    settings: FitSettings,
    start: np.ndarray,
    frozen: np.ndarray,
    steps: np.ndarray,
    bounds: Sequence[Sequence[float]] | None,
    curvature: Sequence[float] | None,
) -> iminuit.Minuit:
    """A quiet Minuit on -2 log L from ``start`` with ``frozen`` parameters fixed, with the
    batched gradient and known curvature when asked."""
    gradient = gradient_function(model, data) if settings.batched_gradient else None
    g2 = None
    if gradient is not None and curvature is not None:
        known = np.asarray(curvature, dtype=float)

        def g2(pars: np.ndarray) -> np.ndarray:
            return known

    minuit = iminuit.Minuit(
        twice_nll_function(model, data), start, grad=gradient, g2=g2, name=model.config.par_names
    )
    minuit.errordef = iminuit.Minuit.LEAST_SQUARES  # the objective is -2 log L
    minuit.limits = model.config.suggested_bounds() if bounds is None else bounds
    minuit.fixed = frozen
    minuit.errors = steps
    minuit.print_level = 0
    return minuit


def _migrad(
    minuit: iminuit.Minuit,
    strategy: int,
    tolerance: float,
    how: str,
    settings: FitSettings,
    hesse: bool,
) -> tuple[Attempt, _Snapshot]:
    """One attempt of the chain: MIGRAD (and HESSE), whether it succeeded, and where it stopped."""
    minuit.strategy = strategy
    minuit.tol = tolerance
    minuit.migrad(ncall=settings.max_calls)
    ok = minuit.valid
    if ok and hesse:
        minuit.hesse()
        ok = minuit.valid and minuit.fmin.has_accurate_covar
        ok = ok and not minuit.fmin.has_made_posdef_covar
    fval = float(minuit.fval)
    covariance = None
    if hesse and minuit.covariance is not None:
        covariance = np.asarray(minuit.covariance)
    attempt = Attempt(strategy, tolerance, how, bool(ok), float(minuit.fmin.edm), fval)
    snapshot = _Snapshot(fval, np.asarray(minuit.values), covariance, np.asarray(minuit.errors))
    return attempt, snapshot


def _outcome(
    attempts: Sequence[Attempt], snapshots: Sequence[_Snapshot], frozen: np.ndarray
) -> Minimum:
    """The last attempt when it converged, else the lowest minimum of all attempts."""
    converged = attempts[-1].valid
    if converged:
        best = snapshots[-1]
    else:
        finite = [snap for snap in snapshots if np.isfinite(snap.twice_nll)] or snapshots
        best = min(finite, key=lambda snap: snap.twice_nll)
        log.error("the fit did not converge after %d attempts; reporting the lowest minimum",
                  len(attempts))  # fmt: skip
    uncertainties = None
    if best.covariance is not None:
        # MINUIT's parabolic errors, as pyhf and cabinetry report them: for a parameter with
        # limits they map the internal error through the limit transformation at +-1 sigma,
        # which is closer to the likelihood's shape than sqrt(diag(covariance)) near a bound
        uncertainties = np.where(frozen, 0.0, best.errors)
    return Minimum(
        best.values, uncertainties, best.covariance, best.twice_nll, converged, tuple(attempts)
    )


def _fmin_problems(minuit: iminuit.Minuit) -> str:
    fmin = minuit.fmin
    flags = {
        "call limit reached": fmin.has_reached_call_limit,
        "EDM above maximum": fmin.is_above_max_edm,
        "parameter at limit": fmin.has_parameters_at_limit,
        "covariance not accurate": fmin.has_covariance and not fmin.has_accurate_covar,
        "covariance forced positive definite": fmin.has_made_posdef_covar,
    }
    return ", ".join(name for name, flag in flags.items() if flag) or "invalid minimum"


# --- refits from the nominal fit -----------------------------------------------------------------


def profile_start(
    record: Anchor,
    bounds: Sequence[Sequence[float]],
    indices: Sequence[int],
    targets: Sequence[float],
    fallback_steps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Start values and step sizes of a refit with ``indices`` held at ``targets``.

    The other parameters start where a Gaussian likelihood with the nominal fit's covariance has
    its conditional minimum, ``theta_hat + C[:, F] C[F, F]^-1 (targets - theta_hat[F])``, with the
    conditional standard deviations as step sizes; both are exact for a parabolic likelihood, so
    MIGRAD usually converges in a few iterations.

    Args:
        record: the nominal fit.
        bounds: parameter bounds (starts are kept strictly inside).
        indices: parameters to hold fixed.
        targets: their values.
        fallback_steps: step sizes where the covariance gives none (fixed or singular).

    Returns:
        Start values and step sizes.
    """
    indices = list(indices)
    targets = np.asarray(targets, dtype=float)
    covariance = record.covariance
    shift = targets - record.values[indices]
    block = covariance[np.ix_(indices, indices)]
    start = record.values.copy()
    steps = fallback_steps.copy()
    if np.all(np.diag(block) > 0) and np.linalg.cond(block) < 1e12:
        gain = covariance[:, indices] @ np.linalg.inv(block)
        start = start + gain @ shift
        conditional = np.diag(covariance) - np.einsum("ij,ij->i", gain, covariance[:, indices])
        steps = np.where(conditional > 0, np.sqrt(np.clip(conditional, 0.0, None)), steps)
    start = inside_bounds(start, bounds, indices, targets)
    return start, np.maximum(steps, 1e-6)


def inside_bounds(
    start: np.ndarray, bounds: np.ndarray, indices: Sequence[int], targets: np.ndarray
) -> np.ndarray:
    """A start point strictly inside the bounds (a millionth of each range away: a minimiser
    started on a bound can stall there), the held parameters at their targets."""
    bounds = np.asarray(bounds, dtype=float)
    margin = 1e-6 * (bounds[:, 1] - bounds[:, 0])
    inside = np.clip(np.asarray(start, dtype=float), bounds[:, 0] + margin, bounds[:, 1] - margin)
    inside[list(indices)] = targets
    return inside


def refit(
    setup: model_utils.Setup,
    record: Anchor,
    indices: Sequence[int],
    targets: Sequence[float],
    settings: FitSettings,
) -> Minimum:
    """Minimise with ``indices`` fixed at ``targets``, warm-started from the nominal fit.

    Only the minimum is needed (no HESSE), so the first attempt uses ``settings.refit_strategy``.
    """
    start, steps = profile_start(
        record,
        setup.model.config.suggested_bounds(),
        indices,
        targets,
        default_steps(setup.model),
    )
    fixed = np.zeros(setup.model.config.npars, dtype=bool)
    fixed[list(indices)] = True
    return minimize(
        setup.model,
        setup.data,
        settings,
        start=start,
        steps=steps,
        fixed=fixed,
        strategy=settings.refit_strategy,
        curvature=_cached_curvature(record.covariance.tobytes(), len(record.values)),
    )


@functools.lru_cache(maxsize=4)
def _cached_curvature(covariance: bytes, npars: int) -> np.ndarray:
    """:func:`curvature` once per nominal fit: every refit of a chunk shares it, and the matrix
    decomposition behind it costs more than a refit where BLAS threads compete for busy cores."""
    values = curvature(np.frombuffer(covariance, dtype=float).reshape(npars, npars))
    values.setflags(write=False)
    return values


def curvature(covariance: np.ndarray) -> np.ndarray:
    """The diagonal of the Hessian of -2 log L at a minimum, from the covariance found there.

    For -2 log L the Hessian is twice the inverse covariance; parameters without variance (fixed)
    get 1, a harmless seed that MIGRAD never uses for them.
    """
    variances = np.diag(covariance)
    free = variances > 0
    values = np.ones(len(variances))
    if np.any(free):
        block = covariance[np.ix_(free, free)]
        values[free] = 2.0 * np.diag(np.linalg.pinv(block, hermitian=True))
    return values
