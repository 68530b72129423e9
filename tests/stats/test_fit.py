"""The nominal fit (analysis/stats/fit.py) against cabinetry and pyhf called directly, its
fit.json record, closure on pseudo-data, and its command line."""

from __future__ import annotations

import json

import cabinetry
import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats import fit as fit_module
from analysis.stats import limits, minimizer, ranking
from analysis.stats import model as model_utils
from tests.stats.references import (
    IMPACT_RELATIVE,
    REFERENCE_TOL,
    SETTINGS,
    TOLERANCE,
    WORKSPACES,
    assert_impact,
    load,
    pyhf_fixed_fit,
)


def test_fit_matches_cabinetry(fitted, references):
    name, setup, result, _ = fitted
    reference = references(name, setup)
    assert result.converged
    assert reference.labels == list(result.labels)
    np.testing.assert_allclose(result.values, reference.bestfit, atol=TOLERANCE)
    np.testing.assert_allclose(result.uncertainties, reference.uncertainty, atol=TOLERANCE)
    assert result.twice_nll == pytest.approx(reference.best_twice_nll, abs=TOLERANCE)
    np.testing.assert_allclose(result.correlation, reference.corr_mat, atol=5 * TOLERANCE)
    assert result.goodness_of_fit.p_value == pytest.approx(reference.goodness_of_fit, abs=1e-3)


def test_fit_record_and_reading_it_back(fitted):
    name, setup, result, record = fitted
    document = result.to_json()
    assert set(document) >= {"poi", "asimov", "converged", "twice_nll", "bestfit", "correlation"}
    assert document["poi"] == setup.pois[0] and document["asimov"] is False
    assert list(document["bestfit"]) == setup.model.config.par_names
    # read back exactly
    assert record.to_json() == document
    np.testing.assert_array_equal(record.values, result.values)
    np.testing.assert_array_equal(record.covariance, result.covariance)
    # the same workspace fitted again gives the same bytes
    again = fit_module.fit(load(name), SETTINGS).to_json()
    assert json.dumps(again, sort_keys=True) == json.dumps(document, sort_keys=True)


def test_fit_json_from_another_workspace_is_refused(tmp_path):
    fit_module.fit(load("simple"), SETTINGS).write(tmp_path / "fit.json")
    with pytest.raises(AnalysisError, match="another workspace"):
        fit_module.read_fit(tmp_path / "fit.json", load("multichannel"))
    with pytest.raises(AnalysisError, match="other POIs or data"):
        fit_module.read_fit(tmp_path / "fit.json", load("simple", pois=["bkg_norm"]))
    with pytest.raises(AnalysisError, match="other POIs or data"):
        fit_module.read_fit(tmp_path / "fit.json", load("simple", asimov=True))


def test_a_fit_that_does_not_converge_says_so():
    setup = load("large")
    result = fit_module.fit(setup, minimizer.FitSettings(max_calls=10))
    assert result.converged is False
    # the whole fallback chain was tried, and the record says so
    assert [attempt.start for attempt in result.attempts] == [
        "start",
        "continued",
        "workspace initial values",
    ]
    document = result.to_json()
    assert document["converged"] is False and len(document["minuit"]) == 3


def test_asimov_fit_returns_the_generating_parameters():
    setup = load("multichannel", asimov=True)
    result = fit_module.fit(setup, SETTINGS)
    expected = model_utils.asimov_parameters(setup.model)
    np.testing.assert_allclose(result.values, expected, atol=2e-3)
    assert result.to_json()["asimov"] is True


@pytest.mark.parametrize("workspace", ["simple", "large"])
def test_closure_injected_signal_and_shifted_nuisance(workspace):
    """Pseudo-data at mu = 2 with a nuisance at +1 sigma: the fit recovers both.

    The auxiliary measurements are generated at the truth as well. On the Asimov pseudo-data the
    fit returns the truth; on Poisson-fluctuated pseudo-data (a fixed seed) it lies within one
    uncertainty of it.
    """
    setup = load(workspace)
    model = setup.model
    truth = model_utils.asimov_parameters(model)
    poi = model.config.poi_index
    shifted = model.config.par_names.index("bkg_shape" if workspace == "simple" else "jet_es")
    truth[poi], truth[shifted] = 2.0, 1.0
    asimov = np.asarray(model.expected_data(truth), dtype=float)
    n_main = model.config.nmaindata
    fluctuated = asimov.copy()
    fluctuated[:n_main] = np.random.default_rng(7).poisson(asimov[:n_main])
    for data, exact in ((asimov, True), (fluctuated, False)):
        result = fit_module.fit(setup._replace(data=data), SETTINGS)
        assert result.converged
        for index, value in ((poi, 2.0), (shifted, 1.0)):
            if exact:
                assert result.values[index] == pytest.approx(value, abs=TOLERANCE)
            else:
                assert abs(result.values[index] - value) < result.uncertainties[index]


def test_command_line_errors_are_one_line(tmp_path, capsys):
    from analysis.stats import fit as fit_cli

    code = fit_cli.main(
        ["--workspace", str(tmp_path / "missing.json"), "--output", str(tmp_path / "fit.json")]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "missing.json: file not found" in lines[0]
    assert not (tmp_path / "fit.json").exists()
    code = fit_cli.main(
        [
            "--workspace",
            str(WORKSPACES / "simple.json"),
            "--settings",
            json.dumps({"pois": ["nope"]}),
            "--output",
            str(tmp_path / "fit.json"),
        ]
    )
    assert code == 1 and "no parameter 'nope' to use as POI" in capsys.readouterr().err


def test_the_workspace_our_analysis_builds():
    """Fit, significance and impacts on the toy analysis's own workspace (38 parameters, six
    channels; its blinded bins hold the prediction) against cabinetry and plain pyhf fits."""
    setup = load("toy_analysis")
    result = fit_module.fit(setup, SETTINGS)
    assert result.converged and setup.model.config.npars > 30
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    reference = cabinetry.fit.fit(setup.model, setup.data, tolerance=REFERENCE_TOL)
    poi = setup.model.config.poi_index
    assert result.values[poi] == pytest.approx(reference.bestfit[poi], abs=TOLERANCE)
    assert result.uncertainties[poi] == pytest.approx(reference.uncertainty[poi], abs=TOLERANCE)
    np.testing.assert_allclose(result.values, reference.bestfit, atol=5 * TOLERANCE)
    assert result.twice_nll == pytest.approx(reference.best_twice_nll, abs=TOLERANCE)
    significance = limits.significance(setup, "mu", SETTINGS)
    expected = cabinetry.fit.significance(setup.model, setup.data, tolerance=REFERENCE_TOL)
    assert significance.observed_significance == pytest.approx(
        expected.observed_significance, abs=TOLERANCE
    )
    # impacts of the two parameters with the largest post-fit effect, against pyhf refits
    names = setup.model.config.par_names
    labels = ["staterror_ggH[0]", "tau_id"]
    for impact in ranking.impacts(setup, result, labels, SETTINGS).impacts:
        i = names.index(impact.parameter)
        target = result.values[i] + result.uncertainties[i]
        values, _ = pyhf_fixed_fit(setup, {impact.parameter: target})
        expected = values[poi] - result.values[poi]
        assert_impact(impact.impact_postfit_up, expected, IMPACT_RELATIVE, impact.parameter)
