"""Newton fits with the staterror parameters profiled in closed form (analysis/stats/profiled.py)
against the fits of every parameter, pyhf with MINUIT, and finite differences."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
import torch

from analysis.stats import gof, newton, profiled
from analysis.stats import likelihood as likelihood_module
from analysis.stats import model as model_utils

STEPS = newton.NewtonSettings(max_iterations=gof.TOY_ITERATIONS, scoring=True)


def low_count_model(n_bins: int = 24) -> pyhf.pdf.Model:
    """One channel of ``n_bins`` bins, from a few events to a few tens, with a staterror on two
    of its three samples, a normfactor, normsys and histosys (the analysis's interpolation codes):
    toys with empty bins and staterror parameters far from 1, as a pair's goodness-of-fit test."""
    rng = np.random.default_rng(11)
    signal, background, other = (rng.uniform(low, high, n_bins) for low, high in
                                 ((0.1, 2.0), (0.05, 12.0), (0.02, 2.0)))  # fmt: skip

    def values(array: np.ndarray) -> list[float]:
        return [float(value) for value in array]

    staterror = "staterror_c"
    channel = {"name": "c", "samples": [
        {"name": "sig", "data": values(signal), "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None},
            {"name": staterror, "type": "staterror", "data": values(0.4 * signal)}]},
        {"name": "bkg", "data": values(background), "modifiers": [
            {"name": staterror, "type": "staterror", "data": values(0.3 * background)},
            {"name": "xs", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
            {"name": "es", "type": "histosys", "data": {
                "hi_data": values(background * 1.06), "lo_data": values(background * 0.95)}}]},
        {"name": "other", "data": values(other), "modifiers": [
            {"name": "xs_other", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}}]},
    ]}  # fmt: skip
    codes = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
    return pyhf.Model({"channels": [channel]}, poi_name="mu", modifier_settings=codes)


def fits(model: pyhf.pdf.Model, toys: np.ndarray, start: np.ndarray, profile: bool):
    """Newton fits of every toy from ``start``, with or without the staterror profiled."""
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    likelihood = likelihood_module.build(model, toys)
    free = np.tile(model_utils.free_mask(model), (len(toys), 1))
    starts = np.tile(start, (len(toys), 1))
    if not profile:
        return newton.minimize(likelihood, starts, free, bounds, STEPS)
    gammas = profiled.profiled_parameters(model, likelihood, free[0])
    return profiled.minimize(likelihood, gammas, starts, free, bounds, STEPS)


def test_the_closed_form_minimum_is_the_minimum():
    """The root minimises 2 (nu - n log nu) + (gamma - a)^2 / sigma^2 over gamma where nu > 0,
    for counts from 0 up, no carried rate (A = 0), a negative one (negative weights), and
    auxiliary data below 0: catches the wrong root, a cancelling form, or a sign in the
    quadratic."""
    rng = np.random.default_rng(5)
    size = 400
    carried = rng.uniform(0.0, 30.0, size)
    carried[:20] = 0.0
    rest = rng.uniform(0.0, 10.0, size) * (rng.uniform(size=size) > 0.2)
    observed = rng.poisson(carried + rest).astype(float)
    carried[20:40] *= -0.05  # negative event weights; some bins without events
    observed[30:40] = 0.0
    aux = rng.normal(1.0, 0.5, size)
    variance = rng.uniform(0.001, 0.5, size)
    gamma = profiled.minimum(*map(torch.as_tensor, (carried, rest, observed, aux, variance)))
    gamma = gamma.numpy()

    def value(g: np.ndarray) -> np.ndarray:
        nu = g * carried + rest
        with np.errstate(divide="ignore", invalid="ignore"):
            poisson = np.where(observed > 0, observed * np.log(nu), 0.0)
        return 2.0 * (nu - poisson) + (g - aux) ** 2 / variance

    nu = gamma * carried + rest
    assert np.all((nu > 0) | (observed == 0))
    for step in (1e-4, 1e-6):
        for shifted in (gamma - step, gamma + step):
            allowed = (shifted * carried + rest > 0) | (observed == 0)
            assert np.all(value(shifted)[allowed] >= value(gamma)[allowed] - 1e-9)
    assert gamma[:20] == pytest.approx(aux[:20], abs=1e-12)  # only the constraint


def test_derivatives_are_the_schur_complement_of_the_full_ones():
    """The profiled value, gradient, Hessian and Fisher information equal those of the full
    likelihood at the profiled point (gradient: the others' block; matrices: their Schur
    complements), and the gradient finite differences of the value: catches a mixed term of
    the wrong bin, a missing constraint curvature, or a gradient off the envelope."""
    model = low_count_model()
    init = np.asarray(model.config.suggested_init(), dtype=float)
    toys = gof.sample_toys(model, init, 4, np.random.default_rng(3))
    likelihood = likelihood_module.build(model, toys)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    gammas = profiled.profiled_parameters(model, likelihood, model_utils.free_mask(model))
    assert len(gammas) == model.config.nmaindata
    function = profiled.Profiled(likelihood, gammas, bounds)
    others = function.others.numpy()
    pars = torch.as_tensor(init[others] + np.random.default_rng(4).normal(0, 0.3, (4, 4)))
    value, gradient, hessian, fisher = function.derivatives(pars, True)
    full = function.expand(pars)
    reference = likelihood.derivatives(full, True)
    assert value.numpy() == pytest.approx(reference[0].numpy(), rel=1e-14)
    assert value.numpy() == pytest.approx(function.values(pars).numpy(), rel=1e-13)
    np.testing.assert_allclose(gradient, reference[1][:, others], rtol=1e-12, atol=1e-9)
    assert reference[1][:, gammas].abs().max() < 1e-8  # each gamma at its minimum
    for matrix, expected in ((hessian, reference[2]), (fisher, reference[3])):
        block = expected[:, others][:, :, others]
        mixed = expected[:, others][:, :, gammas]
        curvature = torch.diagonal(expected[:, gammas][:, :, gammas], dim1=1, dim2=2)
        schur = block - torch.bmm(mixed / curvature[:, None, :], mixed.transpose(1, 2))
        np.testing.assert_allclose(matrix, schur, rtol=1e-10, atol=1e-8)
    step = 1e-6
    for j in range(len(others)):
        shift = torch.zeros_like(pars)
        shift[:, j] = step
        difference = (function.values(pars + shift) - function.values(pars - shift)) / (2 * step)
        np.testing.assert_allclose(difference, gradient[:, j], rtol=1e-5, atol=1e-5)


def test_profiled_fits_equal_full_fits_on_toys_with_empty_bins():
    """On toys with empty bins the profiled Newton fits find every toy's minimum (valid) and the
    fits of all parameters' minimum where those are valid, to 1e-8 in -2 log L and 1e-5 in the
    parameters: catches a profile that is not the minimum, or gammas not put back."""
    model = low_count_model()
    init = np.asarray(model.config.suggested_init(), dtype=float)
    toys = gof.sample_toys(model, init, 60, np.random.default_rng(8))
    assert np.count_nonzero(toys[:, : model.config.nmaindata] == 0) >= 20
    full = fits(model, toys, init, profile=False)
    fast = fits(model, toys, init, profile=True)
    assert fast.valid.all()
    both = full.valid & fast.valid
    assert both.sum() >= 50
    np.testing.assert_allclose(fast.twice_nll[both], full.twice_nll[both], rtol=0, atol=1e-8)
    np.testing.assert_allclose(fast.values[both], full.values[both], atol=1e-5)


def test_a_gamma_whose_minimum_is_below_its_bound_stays_at_the_bound():
    """An empty bin whose auxiliary datum is below 0 has its unbounded minimum below the lower
    bound: the profiled fit holds the gamma there, its fit stays valid, and -2 log L is pyhf's
    minimum with MINUIT (tolerance 1e-8) to 1e-6: catches an unclipped root, or a Hessian that
    counts a gamma held at its bound."""
    model = low_count_model()
    init = np.asarray(model.config.suggested_init(), dtype=float)
    toy = gof.sample_toys(model, init, 1, np.random.default_rng(2))[0]
    n_main = model.config.nmaindata
    empty = int(np.argmin(np.asarray(model.expected_actualdata(init))))
    toy[empty] = 0.0
    order = model.config.auxdata_order
    offset = sum(model.config.param_set(name).n_parameters for name in order[: order.index(
        "staterror_c")])  # fmt: skip
    toy[n_main + offset + empty] = -0.5  # the staterror's auxiliary datum of that bin
    fast = fits(model, toy[None, :], init, profile=True)
    gamma = model.config.par_slice("staterror_c").start + empty
    lower = model.config.suggested_bounds()[gamma][0]
    assert fast.valid[0] and fast.values[0, gamma] == lower
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    _, nll = pyhf.infer.mle.fit(toy, model, init_pars=init.tolist(), return_fitted_val=True)
    assert fast.twice_nll[0] == pytest.approx(float(nll), abs=1e-6)


def test_a_toy_gives_the_same_numbers_in_any_batch():
    """Toys fitted together and one at a time give identical minima, bit for bit: catches rows
    mixed by a batched operation of the profile."""
    model = low_count_model()
    init = np.asarray(model.config.suggested_init(), dtype=float)
    toys = gof.sample_toys(model, init, 8, np.random.default_rng(6))
    together = fits(model, toys, init, profile=True)
    for row in range(len(toys)):
        alone = fits(model, toys[row : row + 1], init, profile=True)
        assert np.array_equal(alone.values[0], together.values[row])
        assert alone.twice_nll[0] == together.twice_nll[row]


def test_only_lone_floating_staterror_parameters_are_profiled():
    """A staterror parameter is profiled where it floats and no other staterror shares its bin:
    catches two coupled gammas solved as if independent, or a fixed one moved."""
    model = low_count_model(4)
    likelihood = likelihood_module.build(model, np.r_[[1.0] * 4, model.config.auxdata])
    free = model_utils.free_mask(model)
    first = model.config.par_slice("staterror_c").start
    assert profiled.profiled_parameters(model, likelihood, free).tolist() == [
        first + b for b in range(4)
    ]
    free[first + 2] = False
    assert first + 2 not in profiled.profiled_parameters(model, likelihood, free)
    spec = model.spec
    spec["channels"][0]["samples"][2]["modifiers"].append(
        {"name": "staterror_other", "type": "staterror", "data": [0.1, 0.1, 0.1, 0.1]}
    )
    shared = pyhf.Model(spec, poi_name="mu")
    both = likelihood_module.build(shared, np.r_[[1.0] * 4, shared.config.auxdata])
    assert len(profiled.profiled_parameters(shared, both, model_utils.free_mask(shared))) == 0
