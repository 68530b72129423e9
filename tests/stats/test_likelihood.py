"""The vectorised HistFactory likelihood (analysis/stats/likelihood.py) against pyhf's logpdf."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.stats import likelihood
from analysis.stats import model as model_utils
from tests.conftest import DATA

WORKSPACES = ("simple", "multichannel", "large", "toy_analysis")
#: Every interpolation code pair pyhf offers.
CODES = (
    {"normsys": "code4", "histosys": "code4p"},
    {"normsys": "code1", "histosys": "code0"},
    {"normsys": "code4", "histosys": "code2"},
)


def load(name: str, **settings) -> model_utils.Setup:
    return model_utils.setup_from_files(DATA / "workspaces" / f"{name}.json", settings)


def points(setup: model_utils.Setup, n: int, spread: float, seed: int = 1) -> np.ndarray:
    """Random parameter points around the initial values, ``spread`` constraint widths wide (so
    that nuisance parameters cross the interpolation's +-1 boundaries), inside the bounds."""
    model = setup.model
    init = np.asarray(model.config.suggested_init(), dtype=float)
    widths = model_utils.prefit_uncertainties(model)
    widths = np.where(widths > 0, widths, 0.3)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    draws = init + spread * widths * np.random.default_rng(seed).normal(size=(n, len(init)))
    return np.clip(draws, bounds[:, 0] + 1e-6, bounds[:, 1])


@pytest.mark.parametrize("codes", CODES, ids=lambda codes: codes["histosys"])
@pytest.mark.parametrize("name", WORKSPACES)
def test_twice_nll_matches_pyhf(name, codes):
    """-2 log L equals pyhf's at random points, constants included, to 1e-10 relative: catches a
    wrong interpolation branch, modifier, constraint or auxiliary datum in the order pyhf uses."""
    setup = load(name, interpolation=codes)
    built = likelihood.build(setup.model, setup.data)
    pars = points(setup, 24, 1.0)  # hundreds of nuisance parameters beyond +-1
    expected = np.array([-2.0 * setup.model.logpdf(p, setup.data)[0] for p in pars])
    got = built.values(pars).numpy()
    # a point with negative expected events is NaN in both
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    assert finite.sum() >= 16
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=0)


def test_a_zero_signal_strength_and_asimov_data():
    """At mu = 0 (the signal's rate vanishes) and on Asimov data the value is pyhf's too."""
    setup = load("multichannel", asimov=True)
    built = likelihood.build(setup.model, setup.data)
    pars = points(setup, 4, 0.5)
    pars[:, setup.model.config.poi_index] = 0.0
    expected = [-2.0 * setup.model.logpdf(p, setup.data)[0] for p in pars]
    np.testing.assert_allclose(built.values(pars).numpy(), expected, rtol=1e-10, atol=0)


def test_rows_are_independent_bit_for_bit():
    """A point's value and derivatives do not depend on the points batched with it (a plain
    matrix product sums in another order for another number of rows)."""
    setup = load("toy_analysis")
    built = likelihood.build(setup.model, setup.data)
    pars = points(setup, 24, 0.3, seed=3)
    values, gradients, hessians = built.derivatives(pars)
    assert torch.equal(values, built.values(pars))
    for first, size in ((0, 1), (5, 3), (11, 13)):
        part = built.derivatives(pars[first : first + size])
        rows = slice(first, first + size)
        assert torch.equal(part[0], values[rows])
        assert torch.equal(part[1], gradients[rows])
        assert torch.equal(part[2], hessians[rows])


def test_unsupported_code_gives_no_likelihood(monkeypatch):
    """A model with an interpolation code (or modifier) it does not implement is refused (the
    refits then use MINUIT) rather than evaluated wrongly."""
    monkeypatch.setitem(likelihood.CODES, "histosys", ("code0",))
    setup = load("simple")  # histosys code4p
    assert likelihood.build(setup.model, setup.data) is None


def test_one_data_set_per_row_matches_pyhf_and_picks_rows():
    """With one data set per row (toys), row i is -2 log L of data set i at point i, pyhf's to
    1e-10, with derivatives equal to those of a likelihood of that data set alone, and
    ``for_rows`` keeps each row's data: catches main or auxiliary data, or the constants, shared
    between rows or misaligned with their points."""
    setup = load("multichannel")
    model = setup.model
    pars = points(setup, 6, 0.5, seed=4)
    rng = np.random.default_rng(2)
    data = np.tile(setup.data, (6, 1))
    data[:, : model.config.nmaindata] = rng.poisson(data[:, : model.config.nmaindata])
    data[:, model.config.nmaindata :] *= rng.uniform(0.9, 1.1, (6, model.config.nauxdata))
    built = likelihood.build(model, data)
    expected = [-2.0 * model.logpdf(p, d)[0] for p, d in zip(pars, data, strict=True)]
    np.testing.assert_allclose(built.values(pars).numpy(), expected, rtol=1e-10, atol=0)
    rows = torch.tensor([4, 1])
    picked = built.for_rows(rows).derivatives(pars[[4, 1]])
    for position, row in enumerate((4, 1)):
        alone = likelihood.build(model, data[row]).derivatives(pars[row : row + 1])
        for got, single in zip(picked, alone, strict=True):
            torch.testing.assert_close(got[position], single[0], rtol=1e-12, atol=1e-9)


def test_holding_multiplying_parameters_as_cell_factors():
    """A likelihood holding the staterror parameters, with each held value as its cells' factor,
    gives -2 log L of the full likelihood less the held parameters' constraint terms, and the
    full gradient and Hessian of the other parameters (hessian.py with a cell factor); with no
    factor they are at 1: catches a parameter index not remapped, a held constraint kept, or a
    cell factor the derivatives leave out."""
    setup = load("toy_analysis")
    model = setup.model
    built = likelihood.build(model, setup.data)
    held = np.asarray(
        [i for i, kind in enumerate(model_utils.modifier_types(model)) if kind == "staterror"]
    )
    assert len(held) > 0
    others = np.setdiff1d(np.arange(model.config.npars), held)
    pars = torch.as_tensor(points(setup, 3, 0.5))
    reduced = built.holding(held)
    unit = pars.clone()
    unit[:, held] = 1.0
    gauss = built.gauss.numpy()
    position = [int(np.flatnonzero(gauss == i)[0]) for i in held]

    def constraints(values: torch.Tensor) -> torch.Tensor:
        pulls = (built.gauss_aux[position] - values[:, held]) / built.sigma[position]
        return torch.sum(pulls * pulls, dim=1)

    np.testing.assert_allclose(
        reduced.values(pars[:, others]) + constraints(unit), built.values(unit), rtol=1e-12
    )
    reduced.cell_factor = torch.ones(len(pars), len(built.nominal), dtype=torch.float64)
    for slot in built.slots:
        cells = torch.nonzero(torch.isin(slot, torch.as_tensor(held)))[:, 0]
        reduced.cell_factor[:, cells] = pars[:, slot[cells]]
    value, gradient, hessian = reduced.derivatives(pars[:, others])
    full = built.derivatives(pars)
    np.testing.assert_allclose(value + constraints(pars), full[0], rtol=1e-12)
    np.testing.assert_allclose(gradient, full[1][:, others], rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(hessian, full[2][:, others][:, :, others], rtol=1e-10, atol=1e-8)
