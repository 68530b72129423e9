"""Discovery significance (``significance.json``) and CLs upper limits (``limits.json``).

Both use the asymptotic formulae of Cowan, Cranmer, Gross and Vitells (Eur. Phys. J. C 71 (2011)
1554), with the same conventions as ``pyhf.infer`` (so the numbers agree with pyhf and cabinetry):

- significance: the q0 test of POI = 0, Z = sqrt(q0); the expected significance is sqrt(q0) on
  Asimov data generated at POI = 1 with the nuisance parameters profiled on the data at POI = 1;
- limits: CLs with the qtilde test statistic (the POI's lower bound moved to 0); the expected
  limit and its bands come from the background-only Asimov data (POI = 0, nuisance parameters
  profiled on the data at POI = 0), for which the expected CLs at n sigma is
  (1 - Phi(n + sqrt(qtilde_A))) / (1 - Phi(n)).

Unlike calling ``pyhf.infer.hypotest`` at every step of the root finding (which refits the
unconditional minimum and regenerates the Asimov data each time), the unconditional fit (MIGRAD +
HESSE) is made once; the Asimov data's unconditional minimum is known exactly (the parameters that
generate it); the conditional fits are Newton refits from the Gaussian conditional minimum, the
unconditional minimum and the nearest conditional minima found so far, the lowest kept
(:mod:`analysis.stats.refits`, MINUIT where they find no valid minimum, counted in the output). The
five expected limits are searched together, each step one batch of five refits: each is where
sqrt(qtilde_A) reaches a value known in closed form, and sqrt(qtilde_A) is nearly POI / sigma_A, so
secant steps from the first guess converge in a few batches. The observed limit starts at the best
fit plus the median's distance from 0 in units of the observed uncertainty. With several POIs each
is tested in turn with the others floating.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

from analysis.core.errors import AnalysisError, cli_main
from analysis.stats import model as model_utils
from analysis.stats.cli import add_workspace_arguments, parse_settings
from analysis.stats.minimizer import (
    Anchor,
    FitSettings,
    Minimum,
    curvature,
    default_steps,
    fit_settings,
    minimize,
)
from analysis.stats.results import Limit, LimitResults, Significance, SignificanceResults

log = logging.getLogger(__name__)

#: The n of each expected limit in the CLs formula, from -2 sigma to +2 sigma (a downward
#: fluctuation of the background-only test statistic gives a lower limit).
BANDS = {
    "expected_minus2sigma": 2.0,
    "expected_minus1sigma": 1.0,
    "expected": 0.0,
    "expected_plus1sigma": -1.0,
    "expected_plus2sigma": -2.0,
}

#: Absolute precision of the limits' root finding, in units of the POI.
LIMIT_XTOL = 1e-6

#: Most steps of the limits' root finding (bisection alone would need about 30).
LIMIT_MAX_STEPS = 100


class _Profile:
    """-2 log L of one data set with one POI fixed at chosen values, fitted on demand and cached.

    The conditional fits of each request are solved together (:func:`analysis.stats.refits.refits`:
    Newton steps on the exact Hessian from the Gaussian conditional minimum of the unconditional
    fit, MINUIT where they find no valid minimum), so a root finding that asks for several POI
    values at once pays about as much as for one.
    """

    def __init__(
        self,
        setup: model_utils.Setup,
        index: int,
        bounds: Sequence[Sequence[float]],
        settings: FitSettings,
        unconditional: Minimum,
        anchor: Anchor,
    ) -> None:
        self.setup, self.index, self.bounds, self.settings = setup, index, bounds, settings
        self.unconditional, self.anchor = unconditional, anchor
        self.fits: dict[float, Minimum] = {}
        self.failed: list[float] = [] if unconditional.converged else [float("nan")]
        self.fallbacks = 0

    @classmethod
    def fitted(
        cls,
        setup: model_utils.Setup,
        index: int,
        bounds: Sequence[Sequence[float]],
        settings: FitSettings,
    ) -> _Profile:
        """The profile of the setup's data, its unconditional minimum found by MIGRAD + HESSE."""
        unconditional = minimize(setup.model, setup.data, settings, bounds=bounds, hesse=True)
        covariance = unconditional.covariance
        if covariance is None:  # HESSE failed: the refits start from the constraint widths
            covariance = np.diag(default_steps(setup.model) ** 2)
        return cls(
            setup, index, bounds, settings, unconditional, _Start(unconditional.values, covariance)
        )

    @classmethod
    def of_asimov(cls, profile: _Profile, value: float) -> tuple[_Profile, np.ndarray]:
        """The profile of the Asimov data at POI = ``value`` with the nuisance parameters profiled
        on ``profile``'s data there (pyhf's convention: the auxiliary data too), and that data.

        The generating parameters are the Asimov data's exact unconditional minimum (every
        Poisson and constraint term is at its maximum there), so no fit is needed for it; the
        refits start from it with ``profile``'s covariance.
        """
        generating = np.asarray(profile.conditional([value])[0].values, dtype=float)
        model = profile.setup.model
        asimov = np.asarray(model.expected_data(generating), dtype=float)
        twice_nll = -2.0 * float(model.logpdf(generating, asimov)[0])
        minimum = Minimum(generating, None, None, twice_nll, True, ())
        anchor = _Start(generating, profile.anchor.covariance)
        setup = profile.setup._replace(data=asimov)
        return cls(setup, profile.index, profile.bounds, profile.settings, minimum, anchor), asimov

    def conditional(self, values: Sequence[float]) -> list[Minimum]:
        """The fits with the POI fixed at each of ``values`` (those not cached, together)."""
        # imported here: the workflow imports this module to count its jobs, without torch
        from analysis.stats.refits import Request, refits

        wanted = [float(value) for value in values]
        missing = sorted(set(wanted) - set(self.fits))
        if missing:
            requests = [Request((self.index,), (value,)) for value in missing]
            outcome = refits(
                self.setup, self.anchor, requests, self.settings,
                fallback=lambda request: self._minuit_fit(request.targets[0]),
                more_starts=lambda request: self._nearby_minima(request.targets[0]),
            )  # fmt: skip
            self.fallbacks += outcome.fallbacks
            for value, minimum in zip(missing, outcome.minima, strict=True):
                if not minimum.converged:
                    self.failed.append(value)
                self.fits[value] = minimum
        return [self.fits[value] for value in wanted]

    def _nearby_minima(self, value: float) -> list[np.ndarray]:
        """Further starts of the refit at ``value``: the unconditional minimum and the fits
        made so far nearest below and above ``value``. -2 log L can have several minima at one
        POI value (a nuisance parameter whose templates shift the yields the same way up and
        down has two), and the Newton steps from the Gaussian start alone can stop in the
        higher one; continuing from a neighbour's minimum follows the lowest along the POI."""
        below = [at for at in self.fits if at < value]
        above = [at for at in self.fits if at > value]
        nearest = ([max(below)] if below else []) + ([min(above)] if above else [])
        return [self.unconditional.values, *(self.fits[at].values for at in nearest)]

    def _minuit_fit(self, value: float) -> Minimum:
        """MIGRAD with the POI fixed at ``value``, from the nearest fit made so far: where the
        Newton steps find no valid minimum (near a bound, e.g. the background-only hypothesis),
        the nearest minimum is a better start than the Gaussian extrapolation."""
        fitted = [self.unconditional, *self.fits.values()]
        nearest = min(fitted, key=lambda fit: abs(fit.values[self.index] - value))
        start = np.array(nearest.values, dtype=float)
        start[self.index] = value
        fixed = np.zeros(len(start), dtype=bool)
        fixed[self.index] = True
        return minimize(
            self.setup.model, self.setup.data, self.settings, start=start, fixed=fixed,
            strategy=self.settings.refit_strategy, bounds=self.bounds,
            curvature=curvature(self.anchor.covariance),
        )  # fmt: skip

    @property
    def refits(self) -> int:
        """How many conditional fits were made."""
        return len(self.fits)

    @property
    def bestfit(self) -> float:
        """The unconditional best-fit value of the POI."""
        return float(self.unconditional.values[self.index])

    def sqrt_qtilde(self, values: Sequence[float]) -> np.ndarray:
        """sqrt(qtilde) at POI = each of ``values`` (0 where the best fit lies above it)."""
        values = np.asarray(values, dtype=float)
        result = np.zeros(len(values))
        above = values >= self.bestfit
        # the POI's lower bound is 0, so the best fit is never negative: qtilde's reference
        # L(0) for a negative best fit is then the unconditional minimum itself
        if np.any(above):
            minima = self.conditional(values[above])
            twice_nll = np.array([minimum.twice_nll for minimum in minima])
            result[above] = np.sqrt(np.clip(twice_nll - self.unconditional.twice_nll, 0.0, None))
        return result


class _Start(NamedTuple):
    """An :class:`~analysis.stats.minimizer.Anchor` from values and a covariance."""

    values: np.ndarray
    covariance: np.ndarray


def _poi_bounds(setup: model_utils.Setup, index: int, poi: str, low_at_zero: bool) -> list:
    """Parameter bounds for the tests, with the POI's lower bound at 0 when asked."""
    bounds = [list(map(float, bound)) for bound in setup.model.config.suggested_bounds()]
    low, high = bounds[index]
    if not low <= 0.0 <= high:
        raise AnalysisError(
            f"POI {poi}: bounds [{low}, {high}] exclude 0, the background-only hypothesis; "
            "widen them in the workspace's measurement"
        )
    if low_at_zero:
        bounds[index][0] = 0.0
    return bounds


def _check_converged(profile: _Profile, poi: str, what: str) -> None:
    if profile.failed:
        log.warning(
            "POI %s: %d fit(s) of the %s did not converge (POI values %s); check the fit",
            poi, len(profile.failed), what, profile.failed,
        )  # fmt: skip


@dataclasses.dataclass
class Tally:
    """How many conditional fits were made, and how many of them MINUIT redid."""

    refits: int = 0
    fallbacks: int = 0

    def add(self, *profiles: _Profile) -> None:
        self.refits += sum(profile.refits for profile in profiles)
        self.fallbacks += sum(profile.fallbacks for profile in profiles)


def significance(
    setup: model_utils.Setup, poi: str, settings: FitSettings, tally: Tally | None = None
) -> Significance:
    """Discovery significance of ``poi`` (q0 test of POI = 0, other POIs floating).

    Args:
        setup: model and data.
        poi: the parameter to test.
        settings: minimiser settings.
        tally: counts the conditional fits, when given.

    Returns:
        Observed and expected p-values and significances (in Gaussian sigma).

    Raises:
        AnalysisError: POI = 0 or 1 lies outside the POI's bounds.
    """
    index = model_utils.parameter_index(setup.model, poi, "POI")
    bounds = _poi_bounds(setup, index, poi, low_at_zero=False)
    if not bounds[index][0] <= 1.0 <= bounds[index][1]:
        raise AnalysisError(f"POI {poi}: bounds {bounds[index]} exclude 1, the signal hypothesis")
    observed = _Profile.fitted(setup, index, bounds, settings)
    observed.conditional([0.0, 1.0])  # q0 and the Asimov data's nuisance parameters, together
    asimov, _ = _Profile.of_asimov(observed, 1.0)
    z_observed, z_expected = (
        float(np.sqrt(_q0(profile, poi, what)))
        for profile, what in (
            (observed, "observed significance"),
            (asimov, "expected significance"),
        )
    )
    if tally is not None:
        tally.add(observed, asimov)
    return Significance(
        poi,
        float(scipy.stats.norm.sf(z_observed)),
        z_observed,
        float(scipy.stats.norm.sf(z_expected)),
        z_expected,
    )


def _q0(profile: _Profile, poi: str, what: str) -> float:
    """The discovery test statistic q0 (0 for a best fit below 0)."""
    if profile.bestfit < 0:
        return 0.0
    value = profile.conditional([0.0])[0].twice_nll - profile.unconditional.twice_nll
    _check_converged(profile, poi, what)
    return max(value, 0.0)


def _cls(sqrt_q: np.ndarray, sqrt_qa: np.ndarray) -> np.ndarray:
    """Observed CLs from sqrt(qtilde) on data and on background-only Asimov data (pyhf's form)."""
    sqrt_q, sqrt_qa = np.asarray(sqrt_q, dtype=float), np.asarray(sqrt_qa, dtype=float)
    safe = np.where(sqrt_qa > 0.0, sqrt_qa, 1.0)
    statistic = np.where(
        sqrt_q < sqrt_qa, sqrt_q - sqrt_qa, (sqrt_q**2 - sqrt_qa**2) / (2.0 * safe)
    )
    cls = scipy.stats.norm.sf(statistic + sqrt_qa) / scipy.stats.norm.sf(statistic)
    return np.where(sqrt_qa > 0.0, cls, 1.0)


def upper_limit(
    setup: model_utils.Setup,
    poi: str,
    settings: FitSettings,
    confidence_level: float = 0.95,
    tally: Tally | None = None,
) -> Limit:
    """CLs upper limit on ``poi`` (qtilde, asymptotic), observed and expected with bands.

    Args:
        setup: model and data.
        poi: the parameter to limit.
        settings: minimiser settings.
        confidence_level: e.g. 0.95.
        tally: counts the conditional fits, when given.

    Returns:
        The limits.

    Raises:
        AnalysisError: a limit lies beyond the POI's upper bound.
    """
    index = model_utils.parameter_index(setup.model, poi, "POI")
    bounds = _poi_bounds(setup, index, poi, low_at_zero=True)
    alpha = 1.0 - confidence_level
    observed_profile = _Profile.fitted(setup, index, bounds, settings)
    asimov_profile, _ = _Profile.of_asimov(observed_profile, 0.0)
    high = bounds[index][1]
    limits = _expected_limits(observed_profile, asimov_profile, alpha, high, poi)
    observed = _observed_limit(
        observed_profile, asimov_profile, alpha, limits["expected"], high, poi
    )
    _check_converged(observed_profile, poi, "observed limit")
    _check_converged(asimov_profile, poi, "expected limit")
    if tally is not None:
        tally.add(observed_profile, asimov_profile)
    return Limit(observed=observed, **limits)


def _expected_limits(
    observed: _Profile, asimov: _Profile, alpha: float, high: float, poi: str
) -> dict[str, float]:
    """The expected limits, from -2 to +2 sigma: each where the expected CLs at n sigma is
    ``alpha``, that is where sqrt(qtilde_A) reaches a value known in closed form. All five are
    searched together: each step refits the five POI values in one batch."""
    targets = np.array([_band_target(n, alpha) for n in BANDS.values()])

    def excess(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return targets[rows] - asimov.sqrt_qtilde(values)

    # sqrt(qtilde_A) is close to POI / sigma_A: the roots lie near target * sigma_A
    guesses = targets * _first_scale(observed)
    roots = _roots(excess, guesses, targets, high, poi, list(BANDS))
    return dict(zip(BANDS, map(float, roots), strict=True))


def _observed_limit(
    observed: _Profile, asimov: _Profile, alpha: float, median: float, high: float, poi: str
) -> float:
    """The observed limit: where the observed CLs is ``alpha`` (its log, which is smoother)."""

    def log_excess(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        cls = _cls(observed.sqrt_qtilde(values), asimov.sqrt_qtilde(values))
        return np.log(np.maximum(cls, 1e-300) / alpha)

    # about the best fit plus the median's distance from 0 in units of the observed uncertainty
    # (sigma_A at the median when the best fit sits at the bound, where HESSE overestimates it)
    bestfit = max(observed.bestfit, 0.0)
    errors = observed.unconditional.uncertainties
    sigma = float(errors[observed.index]) if errors is not None else 0.0
    sigma = sigma if 0.0 < sigma < bestfit else median / _band_target(0.0, alpha)
    guess = np.array([bestfit + _band_target(0.0, alpha) * sigma])
    at_zero = np.array([np.log(1.0 / alpha)])  # CLs = 1 at POI = 0
    return float(_roots(log_excess, guess, at_zero, high, poi, ["observed"])[0])


def _first_scale(observed: _Profile) -> float:
    """A first estimate of the POI's expected uncertainty sigma_A, for the first guess: its
    uncertainty in the fit of the data (the Asimov profile starts from the same covariance); the
    root finding only needs a start near the answer."""
    sigma = float(np.sqrt(max(observed.anchor.covariance[observed.index, observed.index], 0.0)))
    return sigma if np.isfinite(sigma) and sigma > 0 else 1.0


def _band_target(n_sigma: float, alpha: float) -> float:
    """sqrt(qtilde_A) at which the expected CLs at ``n_sigma`` equals ``alpha``: the expected CLs
    is (1 - Phi(n + sqrt(qtilde_A))) / (1 - Phi(n)), solved for sqrt(qtilde_A)."""
    return float(scipy.stats.norm.isf(alpha * scipy.stats.norm.sf(n_sigma)) - n_sigma)


def _roots(
    function: Callable[[np.ndarray, np.ndarray], np.ndarray],
    guesses: np.ndarray,
    at_zero: np.ndarray,
    high: float,
    poi: str,
    names: Sequence[str],
) -> np.ndarray:
    """The roots in (0, ``high``] of falling functions, one per row, searched together.

    ``function(values, rows)`` evaluates rows ``rows`` at ``values`` (one batch of conditional
    fits); ``at_zero`` is each function's value at POI = 0 (positive). Each row takes secant
    steps through its last two points, the first through POI = 0; a step that leaves the row's
    bracket (the largest point known positive, the smallest known negative) is replaced by
    bisection, so the search cannot fail; it ends when the step falls below
    :data:`LIMIT_XTOL`. The functions are nearly linear near their roots, so a few batches do.

    Raises:
        AnalysisError: a root lies above ``high``, the POI's upper bound.
    """
    n = len(guesses)
    low, f_low = np.zeros(n), np.asarray(at_zero, dtype=float).copy()
    upper, f_upper = np.full(n, np.inf), np.full(n, np.nan)
    previous, f_previous = low.copy(), f_low.copy()
    point = np.where(
        np.isfinite(guesses) & (guesses > 0), np.minimum(guesses, high), min(1.0, high)
    )
    roots = np.full(n, np.nan)
    active = np.arange(n)
    for _ in range(LIMIT_MAX_STEPS):
        values = function(point[active], active)
        for row, value in zip(active, values, strict=True):
            x = point[row]
            if value > 0.0:
                if x >= high:
                    raise AnalysisError(
                        f"POI {poi}: the {names[row].replace('_', ' ')} limit lies above the "
                        f"POI's upper bound {high}; raise it in the workspace's measurement "
                        "(parameters: bounds)"
                    )
                low[row], f_low[row] = x, value
            else:
                upper[row], f_upper[row] = x, value
            step = _secant(previous[row], f_previous[row], x, value)
            previous[row], f_previous[row] = x, value
            candidate = x + step
            ceiling = min(upper[row], high)
            if not low[row] < candidate < ceiling or not np.isfinite(candidate):
                # outside the bracket: halve it (double the point while no negative is known)
                candidate = (
                    0.5 * (low[row] + ceiling)
                    if np.isfinite(upper[row])
                    else min(2.0 * max(x, low[row]), high)
                )
            if value == 0.0:
                roots[row] = x
            elif abs(candidate - x) < LIMIT_XTOL:
                roots[row] = candidate
            elif upper[row] - low[row] < LIMIT_XTOL:
                roots[row] = _linear_root(low[row], f_low[row], upper[row], f_upper[row])
            point[row] = candidate
        active = np.flatnonzero(np.isnan(roots))
        if not len(active):
            return roots
    raise AnalysisError(
        f"POI {poi}: the limit search did not converge in {LIMIT_MAX_STEPS} steps "
        f"({', '.join(names[row] for row in active)}); check the fit's convergence"
    )


def _secant(x0: float, f0: float, x1: float, f1: float) -> float:
    """The secant step from ``x1`` through (x0, f0) and (x1, f1); NaN where it is undefined."""
    if f1 == f0:
        return float("nan")
    return -f1 * (x1 - x0) / (f1 - f0)


def _linear_root(x0: float, f0: float, x1: float, f1: float) -> float:
    """Where the line through two points of opposite sign crosses zero."""
    return x0 - f0 * (x1 - x0) / (f1 - f0)


def confidence_level(settings: Mapping[str, Any]) -> float:
    """The limits' confidence level (``limits.confidence_level``, default 0.95)."""
    level = float((settings.get("limits") or {}).get("confidence_level", 0.95))
    if not 0.0 < level < 1.0:
        raise AnalysisError("inference.limits.confidence_level: must lie between 0 and 1")
    return level


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Discovery significance and CLs upper limits.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("significance", "significance.json"), ("limits", "limits.json")):
        command = commands.add_parser(name, help=f"write {text}")
        add_workspace_arguments(command)
        command.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    minimiser = fit_settings(settings)
    tally = Tally()
    if args.command == "significance":
        results = {poi: significance(setup, poi, minimiser, tally) for poi in setup.pois}
        for result in results.values():
            log.info(
                "%s: observed %.3f sigma, expected %.3f sigma", result.poi,
                result.observed_significance, result.expected_significance,
            )  # fmt: skip
        SignificanceResults(setup.asimov, results, tally.refits, tally.fallbacks).write(args.output)
        return
    level = confidence_level(settings)
    limits = {poi: upper_limit(setup, poi, minimiser, level, tally) for poi in setup.pois}
    for poi, limit in limits.items():
        log.info("%s < %.4f (expected %.4f)", poi, limit.observed, limit.expected)
    log.info("%d conditional fits, %d of them redone by MINUIT", tally.refits, tally.fallbacks)
    LimitResults(setup.asimov, level, limits, tally.refits, tally.fallbacks).write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
