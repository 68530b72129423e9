"""Fixtures of the inference tests: the nominal fit of each test workspace and cabinetry's."""

from __future__ import annotations

import cabinetry
import pyhf
import pytest

from analysis.stats import fit as fit_module
from analysis.stats import model as model_utils
from tests.stats.references import REFERENCE_TOL, SETTINGS, load


@pytest.fixture(scope="session", params=["simple", "multichannel", "large"])
def fitted(request, tmp_path_factory):
    """(name, setup, the fit, the fit read back from its fit.json, as later stages read it) of
    the nominal fit of each workspace."""
    setup = load(request.param)
    result = fit_module.fit(setup, SETTINGS)
    path = tmp_path_factory.mktemp(request.param) / "fit.json"
    result.write(path)
    return request.param, setup, result, fit_module.read_fit(path, setup)


@pytest.fixture(scope="session")
def references():
    """cabinetry fits of each workspace (with MINOS on the POI and goodness of fit), cached."""
    cache = {}

    def get(name: str, setup: model_utils.Setup):
        if name not in cache:
            pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
            cache[name] = cabinetry.fit.fit(
                setup.model,
                setup.data,
                minos=list(setup.pois),
                goodness_of_fit=True,
                tolerance=REFERENCE_TOL,
            )
        return cache[name]

    return get
