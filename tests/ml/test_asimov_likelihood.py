"""The binned likelihood and its Asimov Fisher information.

Checked against a per-bin loop, pyhf's likelihood, the analytic expected Fisher information,
finite differences and numpy's matrix inverse.
"""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
import torch

from analysis.ml.asimov_likelihood import (
    asimov_fisher,
    expected_yields,
    poi_nuisance_correlation,
    poi_variance,
    twice_nll,
)

DOUBLE = torch.float64


def _analytic_fisher(nominal, up, down, signal, side: str) -> torch.Tensor:
    """J^T diag(1/nu) J + diag(0, 1, ..., 1), the derivatives written out by hand."""
    nu = nominal.sum(dim=0)
    rows = [nominal[signal].sum(dim=0)]
    for j in range(up.shape[0]):
        varied = (up[j] - nominal) if side == "up" else (nominal - down[j])
        rows.append(varied.sum(dim=0))
    jac = torch.stack(rows)  # (1 + S, B)
    fisher = (jac / nu) @ jac.T
    return fisher + torch.diag(torch.tensor([0.0] + [1.0] * up.shape[0], dtype=fisher.dtype))


def test_interpolation_is_asymmetric_linear(tiny_templates):
    nominal, up, down, signal = tiny_templates
    for mu, eta1, eta2 in ((1.3, 0.7, -0.4), (0.8, -1.2, 0.5)):
        params = torch.tensor([mu, eta1, eta2], dtype=DOUBLE)
        got = expected_yields(params, nominal, up, down, signal).numpy()
        expected = np.zeros(3)
        for p in range(2):
            templ = nominal[p].numpy().copy()
            for j, eta in enumerate((eta1, eta2)):
                templ += max(eta, 0) * (up[j, p] - nominal[p]).numpy()
                templ += min(eta, 0) * (nominal[p] - down[j, p]).numpy()
            expected += (mu if signal[p] else 1.0) * templ
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_likelihood_matches_pyhf_code0(tiny_templates, tiny_pyhf_model):
    nominal, up, down, signal = tiny_templates
    model = tiny_pyhf_model
    pyhf.set_backend("numpy")
    data = np.asarray(model.expected_data(model.config.suggested_init()))
    asimov = torch.tensor(data[:3], dtype=DOUBLE)
    poi = model.config.poi_index
    values = []
    for mu, eta in ((1.0, 0.0), (1.4, 0.8), (0.6, -1.3)):
        pars = np.zeros(2)
        pars[poi], pars[1 - poi] = mu, eta
        ours = twice_nll(
            torch.tensor([mu, eta], dtype=DOUBLE),
            asimov,
            nominal,
            up[:1],
            down[:1],
            signal,
        )
        values.append((float(ours), float(-2 * model.logpdf(pars, data)[0])))
    # Same up to a constant: compare differences to the first point.
    ours, theirs = np.array(values).T
    np.testing.assert_allclose(ours - ours[0], theirs - theirs[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("side", ["up", "down"])
def test_fisher_matches_analytic_and_finite_differences(side, tiny_templates):
    nominal, up, down, signal = tiny_templates
    fisher = asimov_fisher(nominal, up, down, signal, side, create_graph=False)
    torch.testing.assert_close(fisher, _analytic_fisher(nominal, up, down, signal, side))
    # Finite differences of the exact (kinked) likelihood, one-sided into the chosen side.
    asimov = nominal.sum(dim=0)
    sign = 1.0 if side == "up" else -1.0
    h = 1e-4
    point = np.array([1.0, 0.0, 0.0])

    def half_nll(params: np.ndarray) -> float:
        p = torch.tensor(params, dtype=DOUBLE)
        return 0.5 * float(twice_nll(p, asimov, nominal, up, down, signal))

    numeric = np.zeros((3, 3))
    for i in range(3):
        for k in range(3):
            # Steps in the nuisances go only towards `side`, staying on one branch of the kink.
            step_i = np.eye(3)[i] * h * (sign if i else 1.0)
            step_k = np.eye(3)[k] * h * (sign if k else 1.0)
            f = half_nll
            second = (
                f(point + step_i + step_k) - f(point + step_i) - f(point + step_k) + f(point)
            ) / h**2
            numeric[i, k] = second * (sign if i else 1.0) * (sign if k else 1.0)
    np.testing.assert_allclose(fisher.numpy(), numeric, rtol=2e-3, atol=2e-3)


def test_fisher_gradient_equals_gradient_of_expected_information(tiny_templates):
    """The Asimov data follow the templates, so d(loss)/d(templates) is that of J^T V^-1 J."""
    nominal, up, down, signal = tiny_templates
    grads = []
    for fisher_fn in (
        lambda n: asimov_fisher(n, up, down, signal, "up"),
        lambda n: _analytic_fisher(n, up, down, signal, "up"),
    ):
        templ = nominal.clone().requires_grad_(True)
        poi_variance(fisher_fn(templ)).backward()
        grads.append(templ.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_poi_variance_and_correlation_against_numpy_inverse(tiny_templates):
    nominal, up, down, signal = tiny_templates
    fisher = asimov_fisher(nominal, up, down, signal, "down", create_graph=False)
    covariance = np.linalg.inv(fisher.numpy())
    assert float(poi_variance(fisher)) == pytest.approx(covariance[0, 0], rel=1e-12)
    expected = covariance[0, 1:] / np.sqrt(covariance[0, 0] * np.diag(covariance)[1:])
    np.testing.assert_allclose(poi_nuisance_correlation(fisher).numpy(), expected, rtol=1e-12)


def test_stat_only_variance_is_inverse_of_sum_s2_over_b(tiny_templates):
    nominal, _, _, signal = tiny_templates
    empty = nominal.new_zeros((0, 2, 3))
    variance = poi_variance(asimov_fisher(nominal, empty, empty, signal))
    s, total = nominal[0].numpy(), nominal.sum(dim=0).numpy()
    assert float(variance.detach()) == pytest.approx(1.0 / np.sum(s**2 / total), rel=1e-12)
