"""The Asimov profile-likelihood scan against pyhf, and the 68% interval from a scan."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.ml.profile_scan import interval_68, profile_scan


def test_profile_scan_matches_pyhf_interval(tiny_templates, tiny_pyhf_model):
    """Our profiled Asimov scan against pyhf's likelihood profiled by minuit on a smooth case."""
    nominal, up, down, signal = tiny_templates
    mu_values = np.linspace(0.0, 2.5, 51)
    ours = profile_scan(
        mu_values, nominal.numpy(), up[:1].numpy(), down[:1].numpy(), signal.numpy()
    )
    model = tiny_pyhf_model
    pyhf.set_backend("numpy", "scipy")
    init = model.config.suggested_init()
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (-5.0, 5.0)
    data = model.expected_data(init)
    minimum = float(pyhf.infer.mle.fit(data, model, par_bounds=bounds, return_fitted_val=True)[1])
    theirs = [
        float(
            pyhf.infer.mle.fixed_poi_fit(
                mu, data, model, par_bounds=bounds, return_fitted_val=True
            )[1]
        )
        - minimum
        for mu in mu_values
    ]
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    lo, hi = interval_68(mu_values, ours)
    assert lo < 1.0 < hi


def test_interval_68_linear_interpolation_and_error():
    mu = np.linspace(0, 2, 21)
    curve = ((mu - 1.0) / 0.5) ** 2
    lo, hi = interval_68(mu, curve)
    assert (lo, hi) == pytest.approx((0.5, 1.5), abs=0.01)
    with pytest.raises(AnalysisError, match="widen the scan range"):
        interval_68(mu, curve / 100)
