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
unconditional minimum and regenerates the Asimov data each time), the unconditional fits and the
Asimov data are made once and each conditional fit starts from the nearest one already done. Each
expected limit is where sqrt(qtilde_A) reaches a value known in closed form, and sqrt(qtilde_A) is
nearly POI / sigma_A, so its root finding starts next to the answer; the observed limit starts at
the best fit plus the median's distance from 0 in units of the observed uncertainty. A limit with
its four bands costs a few dozen warm-started fits, none far from the answer. With several POIs
each is tested in turn with the others floating.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats

from analysis.core.errors import AnalysisError, cli_main
from analysis.stats import model as model_utils
from analysis.stats.cli import add_workspace_arguments, configure_logging, parse_settings
from analysis.stats.minimizer import FitSettings, Minimum, curvature, fit_settings, minimize
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


class _Profile:
    """-2 log L of one data set with one POI fixed at chosen values, fitted on demand and cached.

    Every conditional fit starts from the cached fit nearest in the POI, which moves the
    nuisance parameters only slightly from one root-finding step to the next.
    """

    def __init__(
        self,
        setup: model_utils.Setup,
        data: np.ndarray,
        index: int,
        bounds: Sequence[Sequence[float]],
        settings: FitSettings,
        start: np.ndarray | None = None,
    ) -> None:
        self.setup, self.data, self.index = setup, data, index
        self.bounds, self.settings = bounds, settings
        self.fits: dict[float, Minimum] = {}
        self.failed: list[float] = []
        self.unconditional = minimize(
            setup.model, data, settings, start=start, bounds=bounds, hesse=True
        )
        if not self.unconditional.converged:
            self.failed.append(float("nan"))
        covariance = self.unconditional.covariance
        # seeds MIGRAD's second derivatives in the conditional fits
        # (see analysis.stats.minimizer.minimize)
        self.curvature = curvature(covariance) if covariance is not None else None

    def twice_nll(self, value: float) -> float:
        """-2 log L at POI = ``value``, the other parameters profiled."""
        value = float(value)
        if value not in self.fits:
            minimum = self._conditional_fit(value)
            if not minimum.converged:
                self.failed.append(value)
            self.fits[value] = minimum
        return self.fits[value].twice_nll

    def _conditional_fit(self, value: float) -> Minimum:
        """The fit with the POI fixed at ``value``, started from the nearest fit made so far."""
        fitted = [self.unconditional, *self.fits.values()]
        nearest = min(fitted, key=lambda fit: abs(fit.values[self.index] - value))
        start = np.array(nearest.values, dtype=float)
        start[self.index] = value
        fixed = np.zeros(len(start), dtype=bool)
        fixed[self.index] = True
        return minimize(
            self.setup.model,
            self.data,
            self.settings,
            start=start,
            fixed=fixed,
            strategy=self.settings.refit_strategy,
            bounds=self.bounds,
            curvature=self.curvature,
        )

    @property
    def bestfit(self) -> float:
        """The unconditional best-fit value of the POI."""
        return float(self.unconditional.values[self.index])

    def qtilde(self, value: float) -> float:
        """The qtilde test statistic at POI = ``value`` (0 where the best fit lies above it)."""
        if self.bestfit > value:
            return 0.0
        # the POI's lower bound is 0, so the best fit is never negative: qtilde's reference
        # L(0) for a negative best fit is then the unconditional minimum itself
        return max(self.twice_nll(value) - self.unconditional.twice_nll, 0.0)


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


def asimov_at(
    setup: model_utils.Setup,
    index: int,
    value: float,
    bounds: Sequence[Sequence[float]],
    settings: FitSettings,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Asimov data for POI = ``value`` with the nuisance parameters profiled on the data there.

    The auxiliary data are set to the profiled values as well (pyhf's convention), so the
    Asimov data set is fitted exactly by those parameters, which are returned with it: an
    unconditional fit of the Asimov data started there has nothing left to do.

    Args:
        start: where the profiling fit starts (the workspace's initial values by default); the
            POI is set to ``value``.
    """
    start = np.array(setup.model.config.suggested_init() if start is None else start, dtype=float)
    start[index] = value
    fixed = np.zeros(len(start), dtype=bool)
    fixed[index] = True
    profiled = minimize(setup.model, setup.data, settings, start=start, fixed=fixed, bounds=bounds)
    parameters = np.asarray(profiled.values, dtype=float)
    return np.asarray(setup.model.expected_data(parameters), dtype=float), parameters


def _check_converged(profile: _Profile, poi: str, what: str) -> None:
    if profile.failed:
        log.warning(
            "POI %s: %d fit(s) of the %s did not converge (POI values %s); check the fit",
            poi, len(profile.failed), what, profile.failed,
        )  # fmt: skip


def significance(setup: model_utils.Setup, poi: str, settings: FitSettings) -> Significance:
    """Discovery significance of ``poi`` (q0 test of POI = 0, other POIs floating).

    Args:
        setup: model and data.
        poi: the parameter to test.
        settings: minimiser settings.

    Returns:
        Observed and expected p-values and significances (in Gaussian sigma).

    Raises:
        AnalysisError: POI = 0 or 1 lies outside the POI's bounds.
    """
    index = model_utils.parameter_index(setup.model, poi, "POI")
    bounds = _poi_bounds(setup, index, poi, low_at_zero=False)
    if not bounds[index][0] <= 1.0 <= bounds[index][1]:
        raise AnalysisError(f"POI {poi}: bounds {bounds[index]} exclude 1, the signal hypothesis")

    def q0(data: np.ndarray, what: str, start: np.ndarray | None = None) -> float:
        profile = _Profile(setup, data, index, bounds, settings, start)
        value = (
            0.0 if profile.bestfit < 0 else profile.twice_nll(0.0) - profile.unconditional.twice_nll
        )
        _check_converged(profile, poi, what)
        return max(value, 0.0)

    observed = float(np.sqrt(q0(setup.data, "observed significance")))
    asimov, generating = asimov_at(setup, index, 1.0, bounds, settings)
    expected = float(np.sqrt(q0(asimov, "expected significance", generating)))
    return Significance(
        poi,
        float(scipy.stats.norm.sf(observed)),
        observed,
        float(scipy.stats.norm.sf(expected)),
        expected,
    )


def _cls(sqrt_q: float, sqrt_qa: float) -> float:
    """Observed CLs from sqrt(qtilde) on data and on background-only Asimov data (pyhf's form)."""
    if sqrt_qa <= 0.0:
        return 1.0
    if sqrt_q < sqrt_qa:
        statistic = sqrt_q - sqrt_qa
    else:
        statistic = (sqrt_q**2 - sqrt_qa**2) / (2.0 * sqrt_qa)
    return float(scipy.stats.norm.sf(statistic + sqrt_qa) / scipy.stats.norm.sf(statistic))


def upper_limit(
    setup: model_utils.Setup, poi: str, settings: FitSettings, confidence_level: float = 0.95
) -> Limit:
    """CLs upper limit on ``poi`` (qtilde, asymptotic), observed and expected with bands.

    Args:
        setup: model and data.
        poi: the parameter to limit.
        settings: minimiser settings.
        confidence_level: e.g. 0.95.

    Returns:
        The limits.

    Raises:
        AnalysisError: a limit lies beyond the POI's upper bound.
    """
    index = model_utils.parameter_index(setup.model, poi, "POI")
    bounds = _poi_bounds(setup, index, poi, low_at_zero=True)
    alpha = 1.0 - confidence_level
    observed_profile = _Profile(setup, setup.data, index, bounds, settings)
    asimov, generating = asimov_at(
        setup, index, 0.0, bounds, settings, start=observed_profile.unconditional.values
    )
    asimov_profile = _Profile(setup, asimov, index, bounds, settings, start=generating)
    limits = _expected_limits(observed_profile, asimov_profile, alpha, bounds[index][1], poi)
    observed = _observed_limit(
        observed_profile, asimov_profile, alpha, limits["expected"], bounds[index][1], poi
    )
    _check_converged(observed_profile, poi, "observed limit")
    _check_converged(asimov_profile, poi, "expected limit")
    return Limit(observed=observed, **limits)


def _expected_limits(
    observed: _Profile, asimov: _Profile, alpha: float, high: float, poi: str
) -> dict[str, float]:
    """The expected limits, from -2 to +2 sigma: each where the expected CLs at n sigma is
    ``alpha``, that is where sqrt(qtilde_A) reaches a value known in closed form."""
    scale = _first_scale(observed, asimov)
    limits = {}
    for band, n in BANDS.items():
        # sqrt(qtilde_A) is close to POI / sigma_A: a root near target * sigma_A
        target = _band_target(n, alpha)
        guess = target * scale
        limits[band] = _root_near(
            lambda value, t=target: t - _sqrt_qtilde(asimov, value), guess, 0.15 * guess, high,
            poi, band,
        )  # fmt: skip
        scale = limits[band] / target  # sigma_A measured at this limit guides the next band
    return limits


def _observed_limit(
    observed: _Profile, asimov: _Profile, alpha: float, median: float, high: float, poi: str
) -> float:
    """The observed limit: where the observed CLs is ``alpha``."""

    def observed_excess(value: float) -> float:
        return _cls(_sqrt_qtilde(observed, value), _sqrt_qtilde(asimov, value)) - alpha

    # about the best fit plus the median's distance from 0 in units of the observed uncertainty
    # (sigma_A at the median when the best fit sits at the bound, where HESSE overestimates it)
    bestfit = max(observed.bestfit, 0.0)
    errors = observed.unconditional.uncertainties
    sigma = float(errors[observed.index]) if errors is not None else 0.0
    sigma = sigma if 0.0 < sigma < bestfit else median / _band_target(0.0, alpha)
    guess = bestfit + _band_target(0.0, alpha) * sigma
    return _root_near(observed_excess, guess, 0.5 * sigma, high, poi, "observed")


def _sqrt_qtilde(profile: _Profile, value: float) -> float:
    return float(np.sqrt(profile.qtilde(value)))


def _first_scale(observed: _Profile, asimov: _Profile) -> float:
    """A first estimate of the POI's expected uncertainty sigma_A, for the first guess.

    The HESSE uncertainty of a POI at its lower bound (the background-only Asimov fit's best
    fit is exactly 0) is inflated by MINUIT's bound transformation, so the smaller of the two
    fits' uncertainties is taken; the root finding only needs a start near the answer.
    """
    candidates = [
        float(profile.unconditional.uncertainties[profile.index])
        for profile in (observed, asimov)
        if profile.unconditional.uncertainties is not None
    ]
    positive = [value for value in candidates if np.isfinite(value) and value > 0]
    return min(positive, default=1.0)


def _band_target(n_sigma: float, alpha: float) -> float:
    """sqrt(qtilde_A) at which the expected CLs at ``n_sigma`` equals ``alpha``: the expected CLs
    is (1 - Phi(n + sqrt(qtilde_A))) / (1 - Phi(n)), solved for sqrt(qtilde_A)."""
    return float(scipy.stats.norm.isf(alpha * scipy.stats.norm.sf(n_sigma)) - n_sigma)


def _root_near(function: Any, guess: float, step: float, high: float, poi: str, name: str) -> float:
    """The root of ``function`` (falling, positive at POI = 0) near ``guess``, below ``high``.

    Steps of ``step``, doubled each time, from the guess bracket the root, then Brent's method
    finds it; every evaluation is a conditional fit, and far from the answer a slow one, so the
    search starts next to it.
    """
    point = min(guess, high) if np.isfinite(guess) and guess > 0 else min(1.0, high)
    step = step if np.isfinite(step) and step > 0 else 0.5 * point
    if function(point) > 0.0:  # the root lies above: step up
        low, upper = point, min(point + step, high)
        while function(upper) > 0.0:
            if upper >= high:
                raise AnalysisError(
                    f"POI {poi}: the {name.replace('_', ' ')} limit lies above the POI's upper "
                    f"bound {high}; raise it in the workspace's measurement (parameters: bounds)"
                )
            low, step = upper, 2.0 * step
            upper = min(upper + step, high)
    else:  # at or below: step down (the function is positive at 0)
        upper, low = point, max(point - step, 0.0)
        while low > 0.0 and function(low) <= 0.0:
            upper, step = low, 2.0 * step
            low = max(low - step, 0.0)
    return float(scipy.optimize.brentq(function, low, upper, xtol=LIMIT_XTOL, rtol=1e-10))


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
    configure_logging()
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    minimiser = fit_settings(settings)
    if args.command == "significance":
        results = {poi: significance(setup, poi, minimiser) for poi in setup.pois}
        for result in results.values():
            log.info(
                "%s: observed %.3f sigma, expected %.3f sigma", result.poi,
                result.observed_significance, result.expected_significance,
            )  # fmt: skip
        SignificanceResults(setup.asimov, results).write(args.output)
        return
    level = confidence_level(settings)
    limits = {poi: upper_limit(setup, poi, minimiser, level) for poi in setup.pois}
    for poi, limit in limits.items():
        log.info("%s < %.4f (expected %.4f)", poi, limit.observed, limit.expected)
    LimitResults(setup.asimov, level, limits).write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
