"""Batched refits (analysis/stats/refits.py, newton.py): impacts against tightly converged pyhf
fits, parameters at their bounds, the MINUIT fallback, and reproducibility."""

from __future__ import annotations

import json
import logging
import types

import numpy as np
import pyhf
import pytest
import scipy.optimize

from analysis.stats import fit as fit_module
from analysis.stats import likelihood, minimizer, newton, ranking, refits
from analysis.stats import model as model_utils
from analysis.stats.results import RankingChunk
from tests.conftest import DATA
from tests.stats.references import assert_impact, double_well

SETTINGS = minimizer.FitSettings()
#: The acceptance against the tight reference: relative, plus the absolute floor of
#: tests/stats/references.py (an impact returned as 0 fails).
RELATIVE = 1e-3
SHIFTS = ("prefit_up", "prefit_down", "postfit_up", "postfit_down")

logging.getLogger("pyhf").setLevel(logging.WARNING)


def load(name: str, **settings) -> model_utils.Setup:
    return model_utils.setup_from_files(DATA / "workspaces" / f"{name}.json", settings)


def tight_impacts(setup: model_utils.Setup, labels: list[str]) -> dict[str, dict[str, float]]:
    """The reference: the nominal fit and every refit by pyhf with MINUIT at tolerance 1e-6, each
    refit started at the best fit with the shifted parameter moved (none of our code)."""
    model = setup.model
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    result = pyhf.infer.mle.fit(setup.data, model, return_uncertainties=True)
    best, errors = result[:, 0], result[:, 1]
    poi = model.config.poi_index
    bounds = model.config.suggested_bounds()
    impacts = {}
    for label in labels:
        i = model.config.par_names.index(label)
        name = label.split("[")[0]
        param_set, first = model.config.param_set(name), model.config.par_slice(name).start
        prefit = param_set.width()[i - first] if param_set.constrained else 0.0
        entry = {}
        for shift, width in zip(SHIFTS, (prefit, -prefit, errors[i], -errors[i]), strict=True):
            target = float(np.clip(best[i] + width, *bounds[i]))
            if target == best[i]:
                entry[shift] = 0.0
                continue
            init, fixed = best.copy(), list(model.config.suggested_fixed())
            init[i], fixed[i] = target, True
            values = pyhf.infer.mle.fit(
                setup.data, model, init_pars=init.tolist(), fixed_params=fixed
            )
            entry[shift] = float(values[poi] - best[poi])
        impacts[label] = entry
    return impacts


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("simple", None),  # every parameter
        ("multichannel", ["bkg_norm", "jes", "fakes_stat_SR[0]", "staterror_SR[2]", "lumi"]),
    ],
)
def test_impacts_match_tightly_converged_pyhf_fits(name, labels):
    """Every impact within 0.1% (plus 2e-5) of independent tight fits, with
    no refit left to MINUIT: catches a wrong Newton step (sign, unscaled, a fixed parameter moved),
    a refit stopped early, or a wrong start."""
    setup = load(name)
    record = fit_module.fit(setup, SETTINGS)
    labels = labels or ranking.ranked_labels(record)
    ranked = ranking.impacts(setup, record, labels, SETTINGS)
    assert ranked.fallbacks == 0 and ranked.refits > 0
    reference = tight_impacts(setup, labels)
    for impact in ranked.impacts:
        assert impact.converged
        for shift in SHIFTS:
            got, expected = getattr(impact, f"impact_{shift}"), reference[impact.parameter][shift]
            assert_impact(got, expected, RELATIVE, (impact.parameter, shift))


def background_like_setup() -> model_utils.Setup:
    """simple.json with data just above the background, so that the best-fit mu is small and a
    refit with a larger background pushes it onto its lower bound, 0."""
    spec = json.loads((DATA / "workspaces" / "simple.json").read_text())
    spec["observations"][0]["data"] = [51.0, 41.0, 32.0, 20.0]
    return model_utils.build(pyhf.Workspace(spec), model_utils.ModelSettings())


def test_a_refit_with_the_poi_at_its_bound():
    """With the background normalisation 1 sigma up, mu ends exactly at 0 with its gradient
    pointing out of the bounds (held there), the other parameters at the constrained minimum of a
    bounded L-BFGS-B fit: catches a step that leaves the bounds, or a bound that stops the other
    parameters."""
    setup = background_like_setup()
    model, poi = setup.model, setup.model.config.poi_index
    record = fit_module.fit(setup, SETTINGS)
    assert 0.0 < record.values[poi] < 0.5
    index = model.config.par_names.index("bkg_norm")
    request = refits.Request((index,), (record.values[index] + 1.0,))
    outcome = refits.refits(setup, record, [request], SETTINGS)
    assert outcome.fell_back == (False,)
    (minimum,) = outcome.minima
    assert minimum.values[poi] == 0.0

    def objective(free: np.ndarray) -> float:
        pars = np.insert(free, index, request.targets[0])
        return -2.0 * float(model.logpdf(pars, setup.data)[0])

    bounds = np.delete(np.asarray(model.config.suggested_bounds()), index, axis=0)
    start = np.delete(np.asarray(model.config.suggested_init(), dtype=float), index)
    expected = scipy.optimize.minimize(
        objective, start, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10}
    )
    assert expected.x[poi] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(np.delete(minimum.values, index), expected.x, atol=1e-4)
    assert minimum.twice_nll <= expected.fun + 1e-9


def test_a_refit_the_newton_steps_cannot_finish_falls_back_to_minuit(monkeypatch, tmp_path):
    """Refits that need more Newton steps than allowed are redone by MINUIT, counted, and give
    MINUIT's minimum; the others keep theirs: catches a fallback that is not run, not counted, or
    that replaces the wrong refit."""
    # one step at most: a refit 0.5 sigma from the best fit needs one, 3 sigma away two
    monkeypatch.setattr(refits, "NEWTON", newton.NewtonSettings(max_iterations=2))
    setup = load("multichannel")
    record = fit_module.fit(setup, SETTINGS)
    names = setup.model.config.par_names
    requests = [
        refits.Request((i,), (record.values[i] + sigmas * record.uncertainties[i],))
        for i in (names.index("jes"), names.index("bkg_norm"), names.index("lumi"))
        for sigmas in (0.5, 3.0)
    ]
    outcome = refits.refits(setup, record, requests, SETTINGS)
    assert outcome.fell_back == (False, True) * 3
    assert outcome.fallbacks == 3
    for request, minimum, fell_back in zip(
        requests, outcome.minima, outcome.fell_back, strict=True
    ):
        expected = minimizer.refit(setup, record, request.indices, request.targets, SETTINGS)
        if fell_back:
            np.testing.assert_array_equal(minimum.values, expected.values)
        else:  # the Newton minimum, not MINUIT's
            assert not np.array_equal(minimum.values, expected.values)
            np.testing.assert_allclose(minimum.values, expected.values, atol=2e-3)
        assert minimum.converged
    # no Newton step at all: the chunk file counts every refit as a fallback
    monkeypatch.setattr(refits, "NEWTON", newton.NewtonSettings(max_iterations=1))
    fit_json = tmp_path / "fit.json"
    record.write(fit_json)
    output = tmp_path / "chunk.json"
    code = ranking.main([
        "chunk", "--workspace", str(DATA / "workspaces" / "multichannel.json"), "--settings",
        "{}", "--fit", str(fit_json), "--chunk", "0", "--chunk-size", "2", "--output", str(output),
    ])  # fmt: skip
    chunk = RankingChunk.read(output)
    assert code == 0 and chunk.refits == 8 and chunk.fallbacks == 8


def test_results_do_not_depend_on_batching_and_repeat_bit_for_bit(monkeypatch):
    """The same impacts in one batch, in batches of 5 refits and on a second run, to the last bit:
    catches state carried between runs or a refit's numbers depending on its batch."""
    setup = load("large")
    record = fit_module.fit(setup, SETTINGS)
    labels = ranking.ranked_labels(record)[:12]
    first = ranking.impacts(setup, record, labels, SETTINGS)
    assert first == ranking.impacts(setup, record, labels, SETTINGS)
    monkeypatch.setattr(refits, "MAX_BATCH", 5)
    assert first == ranking.impacts(setup, record, labels, SETTINGS)


def test_minuit_when_batched_refits_are_off(monkeypatch):
    """``refits.batched: false`` runs MINUIT for every refit and counts no fallback; so does a
    model the batched likelihood does not implement, counting every refit as a fallback."""
    setup = load("simple")
    record = fit_module.fit(setup, SETTINGS)
    index = setup.model.config.par_names.index("bkg_shape")
    requests = [refits.Request((index,), (0.5,))]
    expected = minimizer.refit(setup, record, (index,), (0.5,), SETTINGS)
    off = refits.refits(setup, record, requests, SETTINGS._replace(batched_refits=False))
    assert off.fell_back == (False,)
    np.testing.assert_array_equal(off.minima[0].values, expected.values)
    monkeypatch.setitem(likelihood.CODES, "histosys", ("code0",))
    monkeypatch.setattr(refits, "_LIKELIHOODS", type(refits._LIKELIHOODS)())
    unsupported = refits.refits(setup, record, requests, SETTINGS)
    assert unsupported.fell_back == (True,)
    np.testing.assert_array_equal(unsupported.minima[0].values, expected.values)


def test_the_lowest_minimum_of_several_starts_is_kept():
    """-2 log L of the double-well model (tests/stats/references.py) at mu = 1 has a shallow
    minimum at shape < 0 and the lowest at shape > 0. Started from an anchor in the shallow one,
    the refit stays there; given a second start on the other side it returns the lowest minimum,
    the one a bounded scalar minimisation finds: catches a start that is ignored, or a choice that
    keeps the first valid minimum instead of the lowest."""
    model, data = double_well(121.0, 119.0, 112.0)
    setup = model_utils.Setup(model, data, ("mu",), False, "")
    names = model.config.par_names
    shape, mu = names.index("shape"), names.index("mu")

    def twice_nll(value: float) -> float:
        pars = np.ones(model.config.npars)
        pars[shape] = value
        return -2.0 * float(model.logpdf(pars, data)[0])

    wells = [
        scipy.optimize.minimize_scalar(
            twice_nll, bounds=interval, method="bounded", options={"xatol": 1e-10}
        )
        for interval in ((-3.0, 0.0), (0.0, 3.0))
    ]
    shallow, lowest = sorted(wells, key=lambda well: -well.fun)
    assert shallow.x < 0 < lowest.x and lowest.fun < shallow.fun - 0.01
    anchor = np.ones(model.config.npars)
    anchor[shape] = shallow.x
    record = types.SimpleNamespace(values=anchor, covariance=np.diag([0.01, 0.01]))
    other_side = anchor.copy()
    other_side[shape] = -shallow.x
    request = refits.Request((mu,), (1.0,))
    alone = refits.refits(setup, record, [request], SETTINGS)
    both = refits.refits(setup, record, [request], SETTINGS, more_starts=lambda _: [other_side])
    assert alone.minima[0].twice_nll == pytest.approx(shallow.fun, abs=1e-9)
    assert both.fallbacks == 0
    assert both.minima[0].values[shape] == pytest.approx(lowest.x, abs=1e-6)
    assert both.minima[0].twice_nll == pytest.approx(lowest.fun, abs=1e-9)
