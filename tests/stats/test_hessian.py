"""The chain-rule gradient and Hessian (analysis/stats/hessian.py) against torch's autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.stats import likelihood
from tests.stats.test_likelihood import CODES, WORKSPACES, load, points


def autograd_derivatives(built: likelihood.Likelihood, point: np.ndarray):
    """Gradient and Hessian of one point by differentiating the whole -2 log L with autograd."""
    x = torch.as_tensor(point, dtype=torch.float64)

    def function(y: torch.Tensor) -> torch.Tensor:
        return built.twice_nll(y[None])[0]

    gradient = torch.autograd.functional.jacobian(function, x)
    hessian = torch.autograd.functional.hessian(function, x)
    return gradient.numpy(), hessian.numpy()


@pytest.mark.parametrize("codes", CODES, ids=lambda codes: codes["histosys"])
@pytest.mark.parametrize("name", WORKSPACES)
def test_derivatives_match_autograd(name, codes):
    """Exact to rounding at points on both sides of the interpolations' +-1 boundaries: catches a
    missing product-rule term (normsys x linear, histosys x normsys, pairs of linear factors), a
    wrong sign or a derivative of the wrong interpolation branch."""
    setup = load(name, interpolation=codes)
    built = likelihood.build(setup.model, setup.data)
    pars = points(setup, 6, 0.8, seed=2)
    values, gradients, hessians = built.derivatives(pars)
    np.testing.assert_array_equal(values.numpy(), built.values(pars).numpy())
    for row, point in enumerate(pars):
        gradient, hessian = autograd_derivatives(built, point)
        scale = np.abs(hessian).max()
        np.testing.assert_allclose(gradients[row].numpy(), gradient, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(hessians[row].numpy(), hessian, rtol=0, atol=1e-10 * scale)


def test_derivatives_where_a_linear_factor_is_zero():
    """At mu = 0 the signal's rate is zero: its derivative is the product of the other factors
    (a log-derivative would divide by zero), and pairs like (mu, lumi) keep their cross term."""
    setup = load("multichannel")
    built = likelihood.build(setup.model, setup.data)
    pars = points(setup, 3, 0.5, seed=4)
    pars[:, setup.model.config.poi_index] = 0.0
    _, gradients, hessians = built.derivatives(pars)
    for row, point in enumerate(pars):
        gradient, hessian = autograd_derivatives(built, point)
        assert np.all(np.isfinite(hessians[row].numpy()))
        np.testing.assert_allclose(gradients[row].numpy(), gradient, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(hessians[row].numpy(), hessian, rtol=1e-10, atol=1e-9)


def test_fisher_information_is_the_hessian_on_asimov_data_and_semi_definite():
    """The Fisher information equals the Hessian on Asimov data at the Asimov point (where the
    terms weighted by 1 - n / lambda vanish) and is positive semi-definite at points (with
    positive expectations) where the Hessian is not: catches a wrong factor of the information
    (Fisher scoring of the toys would then take wrong steps) or an information as indefinite as
    the Hessian."""
    from analysis.stats import model as model_utils

    setup = load("toy_analysis", asimov=True)
    built = likelihood.build(setup.model, setup.data)
    asimov = model_utils.asimov_parameters(setup.model)[None, :]
    _, _, hessian, information = built.derivatives(asimov, information=True)
    scale = hessian.abs().max()
    torch.testing.assert_close(information, hessian, rtol=0, atol=1e-10 * scale)
    pars = points(setup, 12, 0.8, seed=5)
    values, _, hessians, informations = built.derivatives(pars, information=True)
    finite = torch.isfinite(values)  # no bin expects negative events (the minimiser's domain)
    assert finite.sum() >= 10
    hessians, informations = hessians[finite], informations[finite]
    assert torch.linalg.eigvalsh(hessians).min() < 0  # the points are far enough to show it
    assert torch.all(torch.linalg.eigvalsh(informations) > -1e-9 * informations.abs().amax())
