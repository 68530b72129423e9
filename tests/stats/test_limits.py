"""CLs limits and significance (analysis.stats.limits) where the POI's bounds get in the way, on
the workspace the toy analysis builds (where pyhf's own root finding does not converge), and
against cabinetry and pyhf's own root finding where those work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cabinetry
import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats import limits, minimizer
from analysis.stats import model as model_utils
from analysis.stats.results import LimitResults
from tests.conftest import DATA
from tests.stats.references import REFERENCE_TOL, TOLERANCE, load

WORKSPACES = DATA / "workspaces"
SETTINGS = minimizer.FitSettings()

logging.getLogger("pyhf").setLevel(logging.WARNING)


def with_poi_bounds(tmp_path: Path, name: str, low: float, high: float) -> model_utils.Setup:
    """Workspace ``name`` with the POI's bounds set in its measurement, as an analyst would."""
    spec = json.loads((WORKSPACES / f"{name}.json").read_text())
    config = spec["measurements"][0]["config"]
    poi = config["poi"]
    config["parameters"] = [p for p in config["parameters"] if p["name"] != poi] + [
        {"name": poi, "bounds": [[low, high]], "inits": [(low + high) / 2]}
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return model_utils.setup_from_files(path, {})


def test_limit_above_the_upper_bound_is_one_line(tmp_path):
    """The simple workspace's limits lie near 1; with the POI capped at 0.2 the root search must
    stop at the bound and say which limit and which bound (fails if a limit were clipped to the
    bound and reported as a number)."""
    setup = with_poi_bounds(tmp_path, "simple", 0.0, 0.2)
    with pytest.raises(AnalysisError, match=r"limit lies above the POI's upper bound 0\.2"):
        limits.upper_limit(setup, "mu", SETTINGS)


def test_bounds_that_exclude_zero_are_refused_by_the_limits(tmp_path):
    """CLs needs the background-only hypothesis mu = 0 inside the bounds."""
    setup = with_poi_bounds(tmp_path, "simple", 0.5, 5.0)
    with pytest.raises(AnalysisError, match="exclude 0, the background-only hypothesis"):
        limits.upper_limit(setup, "mu", SETTINGS)


def test_bounds_that_exclude_one_are_refused_by_the_significance(tmp_path):
    """The expected significance is computed at mu = 1, which must lie inside the bounds."""
    setup = with_poi_bounds(tmp_path, "simple", 0.0, 0.5)
    with pytest.raises(AnalysisError, match="exclude 1, the signal hypothesis"):
        limits.significance(setup, "mu", SETTINGS)


@pytest.mark.parametrize(
    ("workspace", "tolerance"), [("multichannel", 1e-4), ("large", 1e-4), ("toy_analysis", 1e-3)]
)
def test_cls_at_the_limits_is_alpha(workspace, tolerance):
    """pyhf's hypotest at our observed and median expected limits gives CLs = 0.05: an independent
    check, also on the workspace the toy analysis builds (38 parameters, staterror), where
    pyhf's own ``toms748_scan`` does not converge."""
    setup = model_utils.setup_from_files(WORKSPACES / f"{workspace}.json", {})
    poi = setup.pois[0]
    ours = limits.upper_limit(setup, poi, SETTINGS)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-4))
    bounds = setup.model.config.suggested_bounds()
    index = setup.model.config.poi_index
    bounds[index] = (0.0, bounds[index][1])
    observed, _ = pyhf.infer.hypotest(
        ours.observed, setup.data, setup.model, par_bounds=bounds, return_expected_set=True
    )
    _, expected = pyhf.infer.hypotest(
        ours.expected, setup.data, setup.model, par_bounds=bounds, return_expected_set=True
    )
    assert float(observed) == pytest.approx(0.05, abs=tolerance)
    assert float(expected[2]) == pytest.approx(0.05, abs=tolerance)
    assert list(ours.expected_band) == sorted(ours.expected_band)


# --- against cabinetry and pyhf's root finding ---------------------------------------------------


def test_significance_matches_cabinetry(fitted):
    _, setup, _, _ = fitted
    poi = setup.pois[0]
    ours = limits.significance(setup, poi, SETTINGS)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    reference = cabinetry.fit.significance(setup.model, setup.data, tolerance=REFERENCE_TOL)
    assert ours.observed_significance == pytest.approx(
        reference.observed_significance, abs=TOLERANCE
    )
    assert ours.expected_significance == pytest.approx(
        reference.expected_significance, abs=TOLERANCE
    )
    assert ours.observed_p_value == pytest.approx(reference.observed_p_value, abs=TOLERANCE)


def test_limits_match_pyhf_root_finding():
    setup = load("simple")
    ours = limits.upper_limit(setup, "mu", SETTINGS)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    bounds = setup.model.config.suggested_bounds()
    observed, expected = pyhf.infer.intervals.upper_limits.toms748_scan(
        setup.data, setup.model, 0.0, 10.0, rtol=1e-6, par_bounds=bounds, test_stat="qtilde"
    )
    assert ours.observed == pytest.approx(float(observed), abs=TOLERANCE)
    np.testing.assert_allclose(
        ours.expected_band, np.asarray(expected, dtype=float), atol=TOLERANCE
    )


def test_roots_searched_together_reach_the_precision_in_few_batches():
    """Falling functions of different shapes (linear, the concave log CLs-like, one with a root
    near the bound): every root within the search's precision, in a handful of batched
    evaluations. Fails if a row's secant or bisection step went wrong (a root off, or a row
    stuck until the step limit) or if the rows were evaluated one call each."""
    roots = np.array([0.3, 2.0, 7.9])
    shapes = [
        lambda x: 1.0 - x / roots[0],
        lambda x: np.log(2.0) * (1.0 - (x / roots[1]) ** 2),
        lambda x: np.tanh(roots[2] - x),
    ]
    batches = []

    def function(values, rows):
        batches.append(list(rows))
        return np.array([shapes[row](value) for row, value in zip(rows, values, strict=True)])

    at_zero = np.array([shape(0.0) for shape in shapes])
    found = limits._roots(function, np.array([0.5, 1.0, 3.0]), at_zero, 8.0, "mu", ["a", "b", "c"])
    np.testing.assert_allclose(found, roots, atol=limits.LIMIT_XTOL)
    assert len(batches) <= 12
    assert batches[0] == [0, 1, 2]


def test_limits_count_their_conditional_fits(tmp_path):
    """limits.json says how many conditional fits the limit search made and how many MINUIT had
    to redo (fails if the count were dropped or every fit were counted as a fallback)."""
    workspace = WORKSPACES / "simple.json"
    output = tmp_path / "limits.json"
    assert limits.main(["limits", "--workspace", str(workspace), "--output", str(output)]) == 0
    written = LimitResults.read(output)
    assert 5 <= written.refits <= 60
    assert written.fallbacks == 0
    expected = limits.upper_limit(model_utils.setup_from_files(workspace, {}), "mu", SETTINGS)
    assert written.pois["mu"] == expected
