"""What the inference tests compare with: the test workspaces, plain pyhf fits with some
parameters fixed, and the tolerances of those comparisons.

Workspaces (tests/data/workspaces, written by make_workspaces.py): ``simple`` (one channel,
normsys/histosys/lumi), ``multichannel`` (signal and control region, staterror, shapesys, a free
background normalisation), ``large`` (three categories, two POIs, 33 parameters) and
``toy_analysis`` (the workspace the toy analysis builds); :func:`double_well`, a one-bin model
whose -2 log L has two minima.
"""

from __future__ import annotations

import logging

import numpy as np
import pyhf

from analysis.stats import minimizer
from analysis.stats import model as model_utils
from tests.conftest import DATA

WORKSPACES = DATA / "workspaces"
SETTINGS = minimizer.FitSettings()
#: Agreement required on POI-level numbers (best fits, uncertainties, -2 log L, scan values).
TOLERANCE = 1e-3
#: Tolerance of the reference minimisations (tighter than pyhf's default, so that the reference
#: is not the less precise side of a comparison at the 1e-3 level).
REFERENCE_TOL = 1e-4
#: Impacts: the absolute floor of the tolerance, 500 times below the smallest non-zero impact
#: compared (about 0.01), so that an impact returned as 0, or with a wrong sign, fails.
IMPACT_ABSOLUTE = 2e-5
#: Impacts: the relative part against references converged to REFERENCE_TOL (cabinetry, pyhf
#: fits started at the suggested initial values), whose own error reaches 0.15% of the impact.
IMPACT_RELATIVE = 3e-3

logging.getLogger("cabinetry").setLevel(logging.WARNING)
logging.getLogger("pyhf").setLevel(logging.WARNING)


def load(name: str, **settings) -> model_utils.Setup:
    """The test workspace ``name`` with the model ``settings`` (inference section keys)."""
    return model_utils.setup_from_files(WORKSPACES / f"{name}.json", settings)


def assert_impact(got: float, expected: float, relative: float, what: object = "") -> None:
    """``got`` within ``IMPACT_ABSOLUTE + relative * |expected|`` of ``expected``."""
    allowed = IMPACT_ABSOLUTE + relative * abs(expected)
    assert abs(got - expected) <= allowed, (
        f"{what}: {got!r} vs {expected!r} (allowed {allowed:.1e})"
    )


def pyhf_fixed_fit(setup, fixed_values: dict[str, float], data=None) -> tuple[np.ndarray, float]:
    """A fit by pyhf alone with some parameters fixed: (best-fit values, -2 log L)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    model = setup.model
    init = model.config.suggested_init()
    fixed = model.config.suggested_fixed()
    for name, value in fixed_values.items():
        index = model.config.par_names.index(name)
        init[index], fixed[index] = value, True
    values, twice_nll = pyhf.infer.mle.fit(
        setup.data if data is None else data,
        model,
        init_pars=init,
        fixed_params=fixed,
        return_fitted_val=True,
    )
    return np.asarray(values), float(twice_nll)


def double_well(up: float, down: float, observed: float) -> tuple[pyhf.pdf.Model, np.ndarray]:
    """One bin of 100 background events whose nuisance parameter ``shape`` raises the yield both
    ways (templates ``up`` and ``down``), with more events observed: -2 log L then has a maximum
    near shape = 0 and a minimum on each side."""
    spec = {
        "channels": [
            {
                "name": "bin",
                "samples": [
                    {
                        "name": "background",
                        "data": [100.0],
                        "modifiers": [
                            {
                                "name": "shape",
                                "type": "histosys",
                                "data": {"hi_data": [up], "lo_data": [down]},
                            },
                            {"name": "mu", "type": "normfactor", "data": None},
                        ],
                    }
                ],
            }
        ],
        "observations": [{"name": "bin", "data": [observed]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    workspace = pyhf.Workspace(spec)
    model = workspace.model(modifier_settings={"histosys": {"interpcode": "code4p"}})
    return model, np.asarray(workspace.data(model), dtype=float)
