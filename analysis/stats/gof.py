"""Saturated goodness-of-fit tests with toys (config ``gof``), for any pyhf model and its data.

The statistic is Cousins' saturated-model -2 log likelihood ratio
(:func:`analysis.stats.goodness.goodness_of_fit`). Its p-value is sampled with toys generated
from the post-fit model: the auxiliary data of every constrained parameter is drawn from its
constraint around the post-fit value (Gaussian, or Poisson for ``shapesys``) and the main data
from Poisson distributions at the post-fit expectation. The data (from the initial values) and the
toys (from the post-fit point) are fitted alike, all toys of a test together: projected Newton
steps (:mod:`analysis.stats.newton`) on a likelihood holding one data set per toy
(:mod:`analysis.stats.likelihood`), with the per-bin staterror parameters solved for in closed
form at every step (:mod:`analysis.stats.profiled`), MINUIT for a fit those leave without a
valid minimum, counted. The p-value is the fraction of toys whose statistic is at least the
observed one; the asymptotic chi2 p-value is kept alongside. A test's toys follow from its seed
alone, so a rerun gives identical numbers.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

from analysis.stats import model as model_utils
from analysis.stats.goodness import goodness_of_fit
from analysis.stats.minimizer import FitSettings, minimize
from analysis.stats.results import GofDistribution, GofResults, GofTest

log = logging.getLogger(__name__)

#: The p-value below which a test counts as failed in the summary.
THRESHOLD = 0.05
#: Most Newton iterations of a toy's fit before MINUIT takes over.
TOY_ITERATIONS = 100
#: Size of the largest arrays of one batch of toy fits (see :func:`toys_per_batch`): small
#: enough to stay in the CPU's caches, where the fits run fastest (on a pair's test of 500 cells
#: and 106 parameters, 11 ms per toy in batches of 6 to 12, 18 ms in one batch of 96, 32 ms one
#: at a time); results do not depend on it.
BATCH_BYTES = 4 * 2**20


class Sampled(NamedTuple):
    """The statistic of the data, the statistics of its toys, how many toys MINUIT refitted, and
    the best fit to the data."""

    chi2: float
    ndof: int
    p_value_asymptotic: float | None
    toy_chi2: np.ndarray
    fallbacks: int
    bestfit: np.ndarray

    @property
    def p_value(self) -> float:
        """Fraction of toys at least as discrepant as the data (0 without toys)."""
        if len(self.toy_chi2) == 0:
            return 0.0
        return float(np.mean(self.toy_chi2 >= self.chi2))


def seed_of(seed: int, variables: Sequence[str]) -> int:
    """The seed of one test: the configured seed combined with the test's variables, so that
    each test has its own toys and a rerun (in any chunk) the same ones."""
    name = "|".join(variables).encode()
    return int(np.random.SeedSequence([seed, zlib.crc32(name)]).generate_state(1)[0])


def sample_toys(model: Any, pars: np.ndarray, n_toys: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_toys, main + aux)`` pseudo-data around the parameters ``pars``.

    The auxiliary data are drawn from each constraint centred at ``pars`` (the nuisance
    parameters randomised by their constraints), the main data from Poisson distributions at the
    expectation of ``pars``.
    """
    expected = np.asarray(model.expected_actualdata(pars), dtype=float)
    main = rng.poisson(np.clip(expected, 0.0, None), size=(n_toys, len(expected)))
    aux = [_sample_aux(model, name, pars, n_toys, rng) for name in model.config.auxdata_order]
    return np.hstack([main.astype(float), *aux]) if aux else main.astype(float)


def _sample_aux(
    model: Any, name: str, pars: np.ndarray, n_toys: int, rng: np.random.Generator
) -> np.ndarray:
    """Auxiliary data of one constrained parameter set, ``(n_toys, size)``."""
    param_set = model.config.param_set(name)
    centre = np.asarray(pars[model.config.par_slice(name)], dtype=float)
    if param_set.pdf_type == "poisson":
        factors = np.asarray(param_set.factors, dtype=float)
        return rng.poisson(np.clip(centre * factors, 0.0, None), (n_toys, len(centre))).astype(
            float
        )
    width = np.broadcast_to(np.asarray(param_set.width(), dtype=float), centre.shape)
    return rng.normal(centre, width, size=(n_toys, len(centre)))


def saturated_test(
    model: Any,
    data: np.ndarray,
    settings: FitSettings,
    n_toys: int,
    seed: int,
    batch: int | None = None,
    profile: bool = True,
) -> Sampled:
    """Fit the data, compute the saturated statistic, and sample its distribution with toys.

    Args:
        model: the pyhf model.
        data: main and auxiliary data.
        settings: minimiser settings (``inference.fit``).
        n_toys: number of toys.
        seed: seed of the toys.
        batch: toys fitted together (see :func:`fit_toys`).
        profile: profile the staterror parameters analytically in the Newton steps (see
            :func:`fit_toys`).

    Returns:
        The statistic with its asymptotic p-value, and the statistic of every toy.
    """
    # the data are fitted like a toy, from the initial values: as exact as MIGRAD, and on a
    # pair's ~120 parameters about a hundred times faster
    init = np.asarray(model.config.suggested_init(), dtype=float)
    best = fit_toys(model, np.asarray(data, dtype=float)[None, :], init, settings, profile=profile)
    if not best.converged[0]:
        log.warning("the fit to the data did not converge; its statistic may be too large")
    observed = goodness_of_fit(model, data, float(best.twice_nll[0]))
    toy_chi2, fallbacks = toy_statistics(
        model, best.values[0], settings, n_toys, seed, batch, profile
    )
    return Sampled(
        observed.chi2, observed.ndof, observed.p_value, toy_chi2, fallbacks, best.values[0]
    )


def toy_statistics(
    model: Any,
    pars: np.ndarray,
    settings: FitSettings,
    n_toys: int,
    seed: int,
    batch: int | None = None,
    profile: bool = True,
) -> tuple[np.ndarray, int]:
    """The saturated statistic of ``n_toys`` toys drawn around the best fit ``pars`` (seeded by
    ``seed``) and refitted from it, and how many of them MINUIT refitted."""
    toys = sample_toys(model, pars, n_toys, np.random.default_rng(seed))
    fits = fit_toys(model, toys, pars, settings, batch, profile)
    chi2 = [goodness_of_fit(model, toy, nll).chi2 for toy, nll in zip(toys, fits.twice_nll,
                                                                      strict=True)]  # fmt: skip
    return np.asarray(chi2, dtype=float), fits.fallbacks


class ToyFits(NamedTuple):
    """The best fit of every toy, whether it converged, and how many of them MINUIT found."""

    values: np.ndarray  # (toys, parameters)
    twice_nll: np.ndarray  # (toys,)
    converged: np.ndarray  # (toys,): a valid Newton minimum, or MINUIT's convergence
    fallbacks: int


def fit_toys(
    model: Any,
    toys: np.ndarray,
    start: np.ndarray,
    settings: FitSettings,
    batch: int | None = None,
    profile: bool = True,
) -> ToyFits:
    """The minimum of -2 log L of every toy, and how many of them MINUIT had to find.

    The toys are fitted together: one likelihood holds every toy's data (one data set per row,
    :mod:`analysis.stats.likelihood`) and the Newton steps (:mod:`analysis.stats.newton`) move
    all of them from the post-fit point ``start`` at once, in batches of ``batch`` toys (default:
    as many as :data:`BATCH_BYTES` allows; 1 fits them one at a time). A toy without a valid
    minimum there (gradient not small, Hessian not positive definite, or out of bounds) is
    refitted by MINUIT and counted; so is every toy with ``settings.batched_refits`` off. A toy's
    minimum does not depend on the toys batched with it.

    With ``profile`` the staterror parameters, where they outnumber the others (see
    :func:`_profiled`), are solved for in closed form at every step and the Newton steps move the
    other parameters only (:mod:`analysis.stats.profiled`): on a pair's test of the toy analysis
    (121 parameters, 100 of them staterror) 3 to 5 times less CPU per toy, and toys whose nearly
    empty bins pin a staterror parameter at its bound no longer fall back to MINUIT (``python
    bench/gof.py``). The minima are the same (-2 log L to 1e-10) unless a toy's likelihood has
    several (seen with bins of negative simulated yield), where either may be found.
    """
    # imported here: the workflow imports this module to count the chunks, without torch
    from analysis.stats import likelihood as likelihood_module

    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    start = np.clip(start, bounds[:, 0], bounds[:, 1])
    values = np.tile(start, (len(toys), 1))
    twice_nll = np.full(len(toys), np.nan)
    valid = np.zeros(len(toys), dtype=bool)
    if settings.batched_refits and not likelihood_module.supports(model):
        log.warning("the model has modifiers the batched fits do not implement; using MINUIT")
    elif settings.batched_refits:
        gammas = _profiled(model, toys[:1]) if profile else np.zeros(0, dtype=np.int64)
        size = batch or toys_per_batch(model, len(gammas))
        for first in range(0, len(toys), size):
            rows = slice(first, first + size)
            found = _newton_toys(model, toys[rows], start, bounds, settings, gammas)
            values[rows], twice_nll[rows], valid[rows] = found.values, found.twice_nll, found.valid
    converged = valid.copy()
    for row in np.flatnonzero(~valid):
        minimum = minimize(model, toys[row], settings, start=start)
        values[row], twice_nll[row] = minimum.values, minimum.twice_nll
        converged[row] = minimum.converged
    fallbacks = int(np.count_nonzero(~valid))
    if fallbacks and settings.batched_refits:
        log.info("%d of %d fits refitted by MINUIT", fallbacks, len(toys))
    return ToyFits(values, twice_nll, converged, fallbacks)


def toys_per_batch(model: Any, profiled: int = 0) -> int:
    """How many toys one batch of Newton steps holds: the largest arrays of the exact Hessian are
    (toys, cells, parameters moved: all but the ``profiled`` ones) of 8 bytes, kept below
    :data:`BATCH_BYTES`."""
    cells = sum(
        len(sample["data"]) for channel in model.spec["channels"] for sample in channel["samples"]
    )
    moved = max(model.config.npars - profiled, 1)
    return max(1, BATCH_BYTES // (8 * max(cells, 1) * moved))


def _profiled(model: Any, toys: np.ndarray) -> np.ndarray:
    """The parameters :mod:`analysis.stats.profiled` solves for in the toys' fits: none unless
    they outnumber the others. Each Newton step then costs two passes over the other parameters
    instead of one over all: on the toy analysis's pairs of 10 bins (10 of 31 parameters) that
    was 5-10% more CPU per toy, on those of 100 bins (100 of 121) 3 to 5 times less."""
    from analysis.stats import likelihood as likelihood_module
    from analysis.stats import profiled

    likelihood = likelihood_module.build(model, toys)
    gammas = profiled.profiled_parameters(model, likelihood, model_utils.free_mask(model))
    return gammas if 2 * len(gammas) > model.config.npars else gammas[:0]


def _newton_toys(
    model: Any,
    toys: np.ndarray,
    start: np.ndarray,
    bounds: np.ndarray,
    settings: FitSettings,
    gammas: np.ndarray,
) -> Any:
    """Newton steps from ``start`` for a batch of toys (:class:`analysis.stats.newton.
    BatchMinimum`), the parameters ``gammas`` profiled."""
    from analysis.core.device import select_device
    from analysis.stats import likelihood as likelihood_module
    from analysis.stats import newton, profiled
    from analysis.stats.refits import cpu_threads

    device = select_device(settings.device, "inference.refits.device")
    likelihood = likelihood_module.build(model, toys, device)
    # a toy starts a whole Poisson fluctuation away from its minimum, further than a refit of
    # the ranking: on the toy analysis's tests up to ~60 Newton iterations, where 25 left about
    # a third of the toys to MINUIT; and often where the Hessian is not positive definite. There
    # -2 log L can have several minima (bins of negative simulated yield), and Fisher scoring and
    # saddle-free steps each stop in the higher one for a few toys in a hundred, or find none
    # (on the pairs pt_1 x eta_1, m_2 x pt_1, pt_2 x mt_2 of 300 toys: 1, 1 and 5 toys without a
    # minimum by scoring, none by saddle-free steps): both are taken, the lower valid one kept
    starts = np.tile(start, (len(toys), 1))
    free = np.tile(model_utils.free_mask(model), (len(toys), 1))
    found = []
    for scoring in (True, False):
        steps = newton.NewtonSettings(max_iterations=TOY_ITERATIONS, scoring=scoring)
        with cpu_threads(likelihood.device):
            if len(gammas):
                found.append(profiled.minimize(likelihood, gammas, starts, free, bounds, steps))
            else:
                found.append(newton.minimize(likelihood, starts, free, bounds, steps))
    return _lower_valid(*found)


def _lower_valid(first: Any, second: Any) -> Any:
    """Per toy, the valid one of two :class:`analysis.stats.newton.BatchMinimum` with the lower
    -2 log L (the first where neither is valid)."""
    better = second.valid & (~first.valid | (second.twice_nll < first.twice_nll))
    return type(first)(
        *(
            np.where(better[:, None] if field.ndim == 2 else better, other, field)
            for field, other in zip(first, second, strict=True)
        )
    )


def pseudo_data(model: Any, seed: int) -> np.ndarray:
    """One pseudo-data set drawn from the pre-fit model (every parameter at its nominal value),
    from a stream of its own (not the toys'): blinded data with the statistical scatter of real
    data, so that the p-values of a correct model are uniform."""
    pars = model_utils.asimov_parameters(model)
    return sample_toys(model, pars, 1, np.random.default_rng([seed, 1]))[0]


def entry_of(
    variables: Sequence[str],
    bins: int,
    sampled: Sampled,
    n_toys: int,
    seed: int,
    distribution: GofDistribution | None = None,
) -> GofTest:
    """The entry of ``gof.json`` for one test."""
    return GofTest(
        tuple(variables), bins, float(sampled.chi2), int(sampled.ndof), sampled.p_value,
        sampled.p_value_asymptotic, n_toys, sampled.fallbacks, seed, distribution,
    )  # fmt: skip


def distribution_of(
    model: Any,
    data: np.ndarray,
    bestfit: np.ndarray,
    edges: np.ndarray,
    kept: np.ndarray,
    observed: bool,
    settings: FitSettings,
) -> GofDistribution:
    """A single-variable test's pre- and post-fit histogram (:class:`GofDistribution`): the
    model's bins are the ``kept`` ones of the variable's ``edges``. The post-fit band takes the
    covariance from the exact Hessian of -2 log L at ``bestfit`` (the data's fit was made by
    Newton steps, which have it; MINUIT's HESSE where the batched likelihood lacks a modifier)."""
    from analysis.stats.prediction import predict, prefit_parameters

    prefit = predict(model, *prefit_parameters(model))
    postfit = predict(model, bestfit, _covariance(model, data, bestfit, settings))
    kept = np.asarray(kept, dtype=bool)

    def spread(values: np.ndarray) -> tuple[float, ...]:
        full = np.zeros(len(kept))
        full[kept] = values
        return tuple(full.tolist())

    def per_sample(yields: np.ndarray) -> tuple[tuple[float, ...], ...]:
        return tuple(spread(row) for row in yields)

    n_samples, n_bins = prefit.yields.shape
    per_bin = np.zeros((n_bins, n_samples, n_bins))  # the weights of each bin's total
    per_bin[np.arange(n_bins), :, np.arange(n_bins)] = 1.0
    bands = [spread(prediction.uncertainty(per_bin)) for prediction in (prefit, postfit)]
    counts = spread(np.asarray(data[: model.config.nmaindata], dtype=float)) if observed else None
    return GofDistribution(
        tuple(float(edge) for edge in edges), tuple(bool(k) for k in kept),
        tuple(prefit.samples), per_sample(prefit.yields),
        bands[0], per_sample(postfit.yields), bands[1], counts,
    )  # fmt: skip


def _covariance(
    model: Any, data: np.ndarray, values: np.ndarray, settings: FitSettings
) -> np.ndarray:
    """The parameters' covariance at a minimum of -2 log L: twice the inverse of its Hessian in
    the floating parameters (pseudo-inverse, so a flat direction adds no band), zero elsewhere."""
    from analysis.stats import likelihood as likelihood_module

    free = model_utils.free_mask(model)
    likelihood = (
        likelihood_module.build(model, np.asarray(data, dtype=float)[None, :])
        if likelihood_module.supports(model)
        else None
    )
    if likelihood is None:
        minimum = minimize(model, data, settings, start=values, hesse=True)
        return np.asarray(minimum.covariance, dtype=float)
    hessian = likelihood.derivatives(np.asarray(values, dtype=float)[None, :])[2][0]
    inner = np.asarray(hessian.cpu().numpy(), dtype=float)[np.ix_(free, free)]
    covariance = np.zeros((len(values), len(values)))
    covariance[np.ix_(free, free)] = 2.0 * np.linalg.pinv(inner, hermitian=True)
    return covariance


def summary(data: str, tests: Sequence[GofTest]) -> GofResults:
    """All tests with the fraction below :data:`THRESHOLD`, the Kolmogorov-Smirnov p-value of
    uniform toy p-values (what they are if the model describes every input), and the toys
    refitted by MINUIT."""
    p_values = np.array([test.p_value for test in tests], dtype=float)
    below = float(np.mean(p_values < THRESHOLD)) if len(p_values) else 0.0
    uniform = float(scipy.stats.kstest(p_values, "uniform").pvalue) if len(p_values) else 1.0
    fallbacks = sum(test.fallbacks for test in tests)
    return GofResults(data, tuple(tests), below, uniform, fallbacks)
