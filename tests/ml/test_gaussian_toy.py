"""The 2D Gaussian toy of Wunsch et al.: samples, exact reference templates, and the pyhf model."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
import torch

from analysis.ml.gaussian_toy import (
    BACKGROUND_YIELD,
    SHIFT,
    SIGNAL_YIELD,
    make_sample,
    pyhf_model,
    reference_templates,
)


def test_sample_has_the_yields_means_and_shift_of_the_paper():
    # Fails if the weights are not normalised to 50 signal / 1000 background events, or the
    # systematic shifts x1 instead of x2, or by another amount.
    sample = make_sample(20_000, torch.Generator().manual_seed(3))
    assert float(sample["w_signal"].sum()) == pytest.approx(SIGNAL_YIELD)
    assert float(sample["w_background"].sum()) == pytest.approx(BACKGROUND_YIELD)
    assert sample["signal"].mean(0).tolist() == pytest.approx([0.0, 0.0], abs=0.03)
    assert sample["background"].mean(0).tolist() == pytest.approx([1.0, 1.0], abs=0.03)
    for name, sign in (("up", 1.0), ("down", -1.0)):
        shift = (sample[name] - sample["background"]).double()
        torch.testing.assert_close(shift[:, 0], torch.zeros(20_000, dtype=torch.float64))
        torch.testing.assert_close(
            shift[:, 1], torch.full((20_000,), sign * SHIFT, dtype=torch.float64), atol=1e-5,
            rtol=0,
        )  # fmt: skip


def test_reference_templates_match_a_histogram_of_a_large_sample():
    # Fails if the exact Gaussian integrals use the wrong means, shift or normalisation.
    n_bins, low, high = 10, -4.5, 5.5
    templates = reference_templates(n_bins, low, high)
    sample = make_sample(200_000, torch.Generator().manual_seed(4))
    edges = np.linspace(low, high, n_bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    for name, yield_ in (("signal", SIGNAL_YIELD), ("background", BACKGROUND_YIELD),
                         ("up", BACKGROUND_YIELD), ("down", BACKGROUND_YIELD)):  # fmt: skip
        points = sample[name].double().numpy()
        counts = np.histogram2d(points[:, 0], points[:, 1], [edges, edges])[0].ravel()
        expected = templates[name]
        assert expected.sum() == pytest.approx(yield_)
        observed = counts * yield_ / len(points)
        # Poisson-like spread of the sample's bin contents, scaled to the yield
        sigma = np.sqrt(counts + 1) * yield_ / len(points)
        assert np.max(np.abs(observed - expected) / sigma) < 5, name


def test_pyhf_model_interpolates_piecewise_linearly():
    # Fails if the model keeps pyhf's default polynomial histosys interpolation (code4p): the
    # uncertainty-aware likelihood is checked against this model and uses code0.
    templates = {
        "signal": np.array([5.0, 2.0]),
        "background": np.array([10.0, 20.0]),
        "up": np.array([13.0, 21.0]),
        "down": np.array([9.0, 15.0]),
    }
    model = pyhf_model(templates, systematic=True)
    pyhf.set_backend("numpy")
    poi = model.config.poi_index
    for eta, varied in ((0.5, templates["up"]), (-0.5, templates["down"])):
        pars = np.zeros(2)
        pars[poi], pars[1 - poi] = 1.0, eta
        background = templates["background"] + abs(eta) * (varied - templates["background"])
        expected = templates["signal"] + background
        np.testing.assert_allclose(model.expected_actualdata(pars), expected, rtol=1e-12)
