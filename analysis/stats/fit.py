"""Maximum-likelihood fits with iminuit: the nominal fit (``fit.json``) and later stages' refits.

The objective is twice the negative log-likelihood of the pyhf model, minimised by MIGRAD;
uncertainties and correlations come from HESSE. A fit that does not converge is retried along a
fixed chain (see :func:`minimize`), and whether it finally converged is always reported.

Refits with some parameters held fixed (impacts, scan points) start from the nominal best fit moved
along its covariance (:func:`profile_start`): for a Gaussian likelihood that is exactly the
conditional minimum, so MIGRAD only polishes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import iminuit
import numpy as np
import pyhf
import scipy.special
import scipy.stats

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import read_json, write_json
from analysis.core.provenance import package_versions
from analysis.stats import model as model_utils

log = logging.getLogger(__name__)

#: Packages whose versions can change fit results, recorded in ``fit.json``.
VERSIONED_PACKAGES = ("pyhf", "iminuit", "numpy", "scipy")


class FitSettings(NamedTuple):
    """Minimiser settings (config ``inference.fit``)."""

    strategy: int = 1
    refit_strategy: int = 0
    tolerance: float = 1e-4
    max_calls: int = 100_000
    batched_gradient: bool = True


class Attempt(NamedTuple):
    """One MIGRAD run of the fallback chain."""

    strategy: int
    tolerance: float
    start: str
    valid: bool
    edm: float
    twice_nll: float


class Minimum(NamedTuple):
    """Outcome of :func:`minimize`; ``uncertainties``/``covariance`` only when HESSE ran."""

    values: np.ndarray
    uncertainties: np.ndarray | None
    covariance: np.ndarray | None
    twice_nll: float
    converged: bool
    attempts: tuple[Attempt, ...]


class GoodnessOfFit(NamedTuple):
    """Saturated-model goodness of fit: chi2 = 2 (NLL - NLL_saturated) with ndof degrees."""

    chi2: float
    ndof: int
    p_value: float | None


class FitResult(NamedTuple):
    """The nominal fit: best-fit values, HESSE uncertainties and correlations, fit quality."""

    labels: list[str]
    values: np.ndarray
    uncertainties: np.ndarray
    correlation: np.ndarray
    twice_nll: float
    converged: bool
    attempts: tuple[Attempt, ...]
    goodness_of_fit: GoodnessOfFit


class FitRecord(NamedTuple):
    """A nominal fit read back from ``fit.json`` (what ranking, pulls and scans start from)."""

    labels: list[str]
    values: np.ndarray
    uncertainties: np.ndarray
    covariance: np.ndarray
    twice_nll: float
    pois: list[str]
    converged: bool


def fit_settings(settings: Mapping[str, Any]) -> FitSettings:
    """The minimiser settings from a stage's settings (the ``fit`` entry; defaults if absent)."""
    fields = settings.get("fit") or {}
    return FitSettings(**{key: fields[key] for key in FitSettings._fields if key in fields})


def twice_nll_function(model: Any, data: np.ndarray):
    """Twice the negative log-likelihood of ``data`` as a function of the parameters."""
    logpdf = model.logpdf

    def twice_nll(pars: np.ndarray) -> float:
        return -2.0 * float(logpdf(pars, data)[0])

    return twice_nll


#: Batched copies of models for the gradient (see :func:`gradient_function`), built once per model.
_BATCHED_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: Finite-difference step of the gradient, relative to the parameter's scale (its constraint width
#: or 10% of its initial value): far above rounding (-2 log L is known to ~1e-13 relative) and far
#: below the curvature scale, so the central difference is accurate to ~1e-8 relative.
GRADIENT_STEP = 1e-4

#: Most points evaluated in one batched call of the model by :func:`gradient_function`. Larger
#: batches stop paying once the batched tensors outgrow the CPU caches: on the analysis's own
#: workspace (6 channels, 38 parameters) a point costs 0.06 ms in batches of 16 but 0.17 ms in
#: batches of 64, as much as one at a time; on a smaller workspace 16 is as fast as 64.
MAX_BATCH = 16


def gradient_function(model: Any, data: np.ndarray):
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

    first = settings.strategy if strategy is None else strategy
    chain = [
        (first, settings.tolerance, "start"),
        (2, settings.tolerance, "continued"),
        (2, 10 * settings.tolerance, "workspace initial values"),
    ]
    attempts: list[Attempt] = []
    snapshots: list[tuple[float, np.ndarray, np.ndarray | None, np.ndarray]] = []
    for attempt_strategy, tolerance, how in chain:
        if how == "workspace initial values":
            # a fresh start away from wherever the previous attempts got stuck; fixed
            # parameters keep the values they were fixed at
            minuit.values = np.where(frozen, start, suggested)
            minuit.errors = default_steps(model)
        minuit.strategy = attempt_strategy
        minuit.tol = tolerance
        minuit.migrad(ncall=settings.max_calls)
        ok = minuit.valid
        if ok and hesse:
            minuit.hesse()
            ok = minuit.valid and minuit.fmin.has_accurate_covar
            ok = ok and not minuit.fmin.has_made_posdef_covar
        fval = float(minuit.fval)
        attempts.append(
            Attempt(attempt_strategy, tolerance, how, bool(ok), float(minuit.fmin.edm), fval)
        )
        covariance = None
        if hesse and minuit.covariance is not None:
            covariance = np.asarray(minuit.covariance)
        snapshots.append((fval, np.asarray(minuit.values), covariance, np.asarray(minuit.errors)))
        if ok:
            break
        log.warning(
            "fit attempt %d (strategy %d, tolerance %g, from %s) did not converge: %s",
            len(attempts), attempt_strategy, tolerance, how, _fmin_problems(minuit),
        )  # fmt: skip

    converged = attempts[-1].valid
    if converged:
        fval, values, covariance, errors = snapshots[-1]
    else:
        finite = [snap for snap in snapshots if np.isfinite(snap[0])] or snapshots
        fval, values, covariance, errors = min(finite, key=lambda snap: snap[0])
        log.error("the fit did not converge after %d attempts; reporting the lowest minimum",
                  len(attempts))  # fmt: skip
    uncertainties = None
    if covariance is not None:
        # MINUIT's parabolic errors, as pyhf and cabinetry report them: for a parameter with
        # limits they map the internal error through the limit transformation at +-1 sigma,
        # which is closer to the likelihood's shape than sqrt(diag(covariance)) near a bound
        uncertainties = np.where(frozen, 0.0, errors)
    return Minimum(values, uncertainties, covariance, fval, converged, tuple(attempts))


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


def correlation_matrix(covariance: np.ndarray) -> np.ndarray:
    """Correlations from a covariance; rows and columns of fixed parameters (no variance) are 0."""
    sigma = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale = np.outer(sigma, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, covariance / np.where(scale > 0, scale, 1.0), 0.0)


def goodness_of_fit(model: Any, data: np.ndarray, twice_nll: float) -> GoodnessOfFit:
    """Goodness of fit against the saturated model (one free yield per bin).

    The saturated likelihood is a Poisson term at rate = observed count in every bin times the
    constraint terms at their maximum; the fit's -2 log L difference to it is chi2-distributed
    with (bins - free unconstrained parameters) degrees of freedom.

    Args:
        model: the pyhf model.
        data: main and auxiliary data of the fit.
        twice_nll: the fit's minimum of -2 log L.

    Returns:
        chi2, ndof and p-value (None when ndof <= 0).
    """
    n_main = model.config.nmaindata
    counts = np.asarray(data[:n_main], dtype=float)
    # log Poisson(n | n), with 0 log 0 = 0
    poisson = scipy.special.xlogy(counts, counts) - counts - scipy.special.gammaln(counts + 1.0)
    saturated = float(np.sum(poisson))
    if model.config.nauxdata:
        aux = np.asarray(data[n_main:], dtype=float)
        # the constraint terms are maximal with every parameter at its auxiliary measurement
        # (for custom auxiliary data that differs from the nominal centres)
        pars = _aux_maximising_parameters(model, aux)
        pars = np.where(np.isnan(pars), model.config.suggested_init(), pars)
        saturated += float(np.sum(model.constraint_logpdf(aux, pars)))
    chi2 = max(twice_nll + 2.0 * saturated, 0.0)
    free = model_utils.free_mask(model)
    constrained = ~np.isnan(model_utils.constraint_centres(model))
    ndof = int(n_main - np.count_nonzero(free & ~constrained))
    p_value = float(scipy.stats.chi2.sf(chi2, ndof)) if ndof > 0 else None
    return GoodnessOfFit(chi2, ndof, p_value)


def _aux_maximising_parameters(model: Any, aux: np.ndarray) -> np.ndarray:
    """Per parameter, the value that maximises its constraint for the given auxiliary data."""
    pars = np.full(model.config.npars, np.nan)
    for name, aux_slice in zip(model.config.auxdata_order, _aux_slices(model), strict=True):
        param_set = model.config.param_set(name)
        values = aux[aux_slice]
        if param_set.pdf_type == "poisson":
            values = values / np.asarray(param_set.factors, dtype=float)
        pars[model.config.par_slice(name)] = values
    return pars


def _aux_slices(model: Any) -> list[slice]:
    slices, offset = [], 0
    for name in model.config.auxdata_order:
        size = model.config.param_set(name).n_parameters
        slices.append(slice(offset, offset + size))
        offset += size
    return slices


def fit(setup: model_utils.Setup, settings: FitSettings) -> FitResult:
    """The nominal maximum-likelihood fit with HESSE uncertainties and goodness of fit.

    Args:
        setup: model, data and POIs.
        settings: minimiser settings.

    Returns:
        The fit result (``converged`` False when the fallback chain failed, never hidden).
    """
    minimum = minimize(setup.model, setup.data, settings, hesse=True)
    labels = list(setup.model.config.par_names)
    covariance = minimum.covariance
    if covariance is None:  # HESSE never ran (MIGRAD failed before it): no uncertainties
        covariance = np.zeros((len(labels), len(labels)))
    uncertainties = (
        minimum.uncertainties if minimum.uncertainties is not None else np.zeros(len(labels))
    )
    return FitResult(
        labels,
        minimum.values,
        uncertainties,
        correlation_matrix(covariance),
        minimum.twice_nll,
        minimum.converged,
        minimum.attempts,
        goodness_of_fit(setup.model, setup.data, minimum.twice_nll),
    )


def fit_record(setup: model_utils.Setup, result: FitResult) -> dict[str, Any]:
    """The ``fit.json`` content (results contract in DESIGN.md, plus fit quality and provenance)."""
    fixed = ~model_utils.free_mask(setup.model)
    return {
        "poi": setup.pois[0],
        "pois": list(setup.pois),
        "asimov": setup.asimov,
        "converged": result.converged,
        "twice_nll": result.twice_nll,
        "bestfit": {
            label: [float(value), float(error)]
            for label, value, error in zip(
                result.labels, result.values, result.uncertainties, strict=True
            )
        },
        "correlation": {"parameters": result.labels, "matrix": result.correlation.tolist()},
        "fixed": [label for label, frozen in zip(result.labels, fixed, strict=True) if frozen],
        "goodness_of_fit": result.goodness_of_fit._asdict(),
        "minuit": [attempt._asdict() for attempt in result.attempts],
        "workspace_sha256": setup.digest,
        "versions": {
            "python": platform.python_version(),
            **package_versions(VERSIONED_PACKAGES),
        },
    }


def as_record(setup: model_utils.Setup, result: FitResult) -> FitRecord:
    """The nominal fit in the form later stages start from (as :func:`read_fit` returns it)."""
    covariance = result.correlation * np.outer(result.uncertainties, result.uncertainties)
    return FitRecord(
        list(result.labels),
        np.asarray(result.values, dtype=float),
        np.asarray(result.uncertainties, dtype=float),
        covariance,
        float(result.twice_nll),
        list(setup.pois),
        result.converged,
    )


def read_fit(path: str | os.PathLike[str], setup: model_utils.Setup) -> FitRecord:
    """Read ``fit.json`` back, checking that it belongs to this model.

    Raises:
        AnalysisError: the file is missing or was made for another workspace or settings.
    """
    record = read_json(path)
    labels = list(setup.model.config.par_names)
    try:
        parameters = record["correlation"]["parameters"]
        matrix = np.asarray(record["correlation"]["matrix"], dtype=float)
        values = np.asarray([record["bestfit"][label][0] for label in labels], dtype=float)
        errors = np.asarray([record["bestfit"][label][1] for label in labels], dtype=float)
        pois, twice_nll, converged = record["pois"], record["twice_nll"], record["converged"]
    except (KeyError, TypeError, IndexError):
        raise AnalysisError(
            f"{path}: made from another workspace (other parameters); rerun the fit stage"
        ) from None
    if parameters != labels or record.get("workspace_sha256") != setup.digest:
        raise AnalysisError(f"{path}: made from another workspace; rerun the fit stage")
    if list(pois) != list(setup.pois) or record.get("asimov") != setup.asimov:
        raise AnalysisError(f"{path}: made with other POIs or data; rerun the fit stage")
    covariance = matrix * np.outer(errors, errors)
    if not converged:
        # later stages still run (their output says what they started from), but say it loudly
        log.warning(
            "%s: the nominal fit did not converge; results built on it are unreliable", path
        )
    return FitRecord(labels, values, errors, covariance, float(twice_nll), list(pois), converged)


def profile_start(
    record: FitRecord,
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
    bounds = np.asarray(bounds, dtype=float)
    margin = 1e-6 * (bounds[:, 1] - bounds[:, 0])
    start = np.clip(start, bounds[:, 0] + margin, bounds[:, 1] - margin)
    start[indices] = targets
    return start, np.maximum(steps, 1e-6)


def refit(
    setup: model_utils.Setup,
    record: FitRecord,
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


def configure_logging() -> None:
    """Log lines with time stamps for a stage's log file; pyhf's chatter about building the model
    (one line per modifier) only from warnings up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pyhf").setLevel(logging.WARNING)


def add_workspace_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every inference stage shares: workspace and settings."""
    parser.add_argument("--workspace", required=True, help="pyhf JSON workspace")
    parser.add_argument(
        "--settings",
        default="{}",
        help="the config's inference section as JSON, plus patch and patch_name",
    )


def parse_settings(text: str) -> dict[str, Any]:
    """The ``--settings`` JSON, with one clear line when it is malformed."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnalysisError(f"--settings: not valid JSON ({err})") from None
    if not isinstance(settings, dict):
        raise AnalysisError("--settings: must be a JSON object")
    return settings


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Nominal maximum-likelihood fit (fit.json).")
    add_workspace_arguments(parser)
    parser.add_argument("--output", required=True, help="fit.json to write")
    args = parser.parse_args(argv)
    configure_logging()
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    result = fit(setup, fit_settings(settings))
    poi = setup.model.config.poi_index
    log.info(
        "%s = %.4f +- %.4f (converged: %s, goodness of fit p = %s)",
        setup.pois[0], result.values[poi], result.uncertainties[poi], result.converged,
        result.goodness_of_fit.p_value,
    )  # fmt: skip
    write_json(args.output, fit_record(setup, result))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
