"""Profile-likelihood scans (analysis/stats/scan.py) against cabinetry, MINOS and pyhf root
finding, in one and two dimensions."""

from __future__ import annotations

import cabinetry
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from analysis.stats import fit as fit_module
from analysis.stats import scan
from analysis.stats.chunks import chunk_count
from analysis.stats.results import ScanChunk
from tests.stats.references import REFERENCE_TOL, SETTINGS, TOLERANCE, load, pyhf_fixed_fit


def test_scan_matches_cabinetry_and_minos(fitted, references):
    name, setup, result, record = fitted
    poi = setup.pois[0]
    settings = scan.ScanSettings(points=15, chunk_size=8)
    points = scan.grid(setup, record, [poi], settings)
    chunks = []
    for chunk in range(chunk_count(len(points), settings.chunk_size)):
        selected = points[chunk * settings.chunk_size : (chunk + 1) * settings.chunk_size]
        profiled = scan.profile(setup, record, [poi], selected, SETTINGS)
        chunks.append(ScanChunk((poi,), chunk, len(points), tuple(profiled)))
    document = scan.gather_1d(chunks[::-1], record, poi)  # order of the chunks does not matter
    assert list(document.values) == [point[0] for point in points]
    reference = cabinetry.fit.scan(
        setup.model,
        setup.data,
        poi,
        par_range=(points[0][0], points[-1][0]),
        n_steps=len(points),
        tolerance=REFERENCE_TOL,
    )
    np.testing.assert_allclose(document.values, reference.parameter_values, atol=1e-12)
    np.testing.assert_allclose(document.delta_twice_nll, reference.delta_nlls, atol=TOLERANCE)
    # the 68% interval is MINOS's
    low, high = references(name, setup).minos_uncertainty[poi]
    bestfit = result.values[setup.model.config.poi_index]
    assert document.interval_68 == pytest.approx([bestfit + low, bestfit + high], abs=TOLERANCE)
    # the 95% interval: where pyhf's profile likelihood crosses 3.84, found by root finding
    minimum = result.twice_nll
    threshold = scipy.stats.chi2.ppf(0.95, 1)

    def excess(value: float) -> float:
        return pyhf_fixed_fit(setup, {poi: value})[1] - minimum - threshold

    # bracketed within +-0.01 of our ends (brentq fails if the crossing is not in there)
    ends = [
        scipy.optimize.brentq(excess, end - 0.01, end + 0.01, xtol=1e-4)
        for end in document.interval_95
    ]
    assert document.interval_95 == pytest.approx(ends, abs=TOLERANCE)


def test_two_dimensional_scan():
    setup = load("large", pois=["mu_ggH", "mu_qqH"])
    assert setup.pois == ("mu_ggH", "mu_qqH")
    record = fit_module.fit(setup, SETTINGS)
    settings = scan.ScanSettings(points_2d=4, chunk_size=5)
    points = scan.grid(setup, record, list(setup.pois), settings)
    assert len(points) == 16
    profiled = scan.profile(setup, record, list(setup.pois), points, SETTINGS)
    document = scan.gather_2d(
        [ScanChunk(setup.pois, 0, len(points), tuple(profiled))], record, setup.pois
    )
    surface = document.delta_twice_nll
    assert surface.shape == (4, 4) and surface.min() >= 0
    x, y = document.x[1], document.y[2]
    _, reference = pyhf_fixed_fit(setup, {"mu_ggH": x, "mu_qqH": y})
    assert surface[1, 2] == pytest.approx(reference - record.twice_nll, abs=TOLERANCE)


def test_scan_interval_of_a_parabola():
    values = np.linspace(-3.0, 5.0, 17)
    delta = ((values - 1.0) / 2.0) ** 2  # best fit 1, sigma 2
    assert scan.interval(values, delta, 1.0, scan.LEVELS["interval_68"]) == pytest.approx(
        [-1.0, 3.0], abs=1e-9
    )
    # not crossed on the right within the range
    assert scan.interval(values[:10], delta[:10], 1.0, 0.95)[1] is None
