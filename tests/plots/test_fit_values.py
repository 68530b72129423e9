"""The fit figures show the numbers of the files they are drawn from: values read back from the
artists of pulls, impacts, correlations, scans, contours and limits (tests/plots/artists.py) on
the small synthetic fit outputs, and no two of their texts overlap."""

from __future__ import annotations

import dataclasses

import pytest

from analysis.plots import fit as plot_fit
from analysis.plots import scans as plot_scans
from analysis.plots.style import math_name
from analysis.stats.results import (
    FitResults,
    LimitResults,
    PullsResults,
    RankingResults,
    Scan2DResults,
    ScanResults,
)
from tests.plots import artists
from tests.plots.inputs import STYLE
from tests.plots.test_style import overlaps


def test_pulls_impacts_and_correlations_show_the_records(fit_inputs, tmp_path, monkeypatch):
    """Catches a pull drawn on another parameter's row, the constraint or the post-fit impact
    drawn as something else (e.g. pre-fit and post-fit bars swapped), only the top entries not
    cut at plots.ranking_top, a free parameter's missing pull failing the figure, a correlation
    matrix transposed or reordered against its labels."""
    directory, _, _ = fit_inputs
    fit_path = str(directory / "fit.json")
    fit = FitResults.read(fit_path)
    pulls = PullsResults.read(directory / "pulls.json").constrained
    ranking = RankingResults.read(directory / "ranking.json").impacts
    # a free parameter among them (as another POI or a free normalisation is): no pull, no prior
    free = ranking[1]._replace(modifier="normfactor", pull=None, constraint=None,
                               impact_prefit_up=0.0, impact_prefit_down=0.0)  # fmt: skip
    RankingResults((ranking[0], free, *ranking[2:])).write(tmp_path / "ranking.json")
    with artists.captured_figures(monkeypatch) as figures:
        plot_fit.plot_pulls(pulls, tmp_path / "pulls", STYLE)
        plot_fit.plot_impacts(str(tmp_path / "ranking.json"), fit_path, 2, tmp_path / "i", STYLE)
        plot_fit.plot_correlation(fit_path, 0.1, tmp_path / "correlation", STYLE)
        pull_fig, impact_fig, correlation_fig = figures
        artists.check_pulls(pull_fig, pulls)
        artists.check_impacts(impact_fig, (ranking[0], free), fit)
        shown = shown_in_correlation(fit, 0.1)
        assert 1 < len(shown) < len(fit.labels), "the threshold keeps some, not all"
        artists.check_correlation(correlation_fig, fit, shown)
        assert [overlaps(fig, monkeypatch) for fig in figures] == [[], [], []]


def shown_in_correlation(fit: FitResults, threshold: float) -> list[str]:
    """The parameters with a correlation of at least ``threshold`` with another one, computed
    here from the matrix (not by the plotting code)."""
    size = len(fit.labels)
    return [
        fit.labels[i]
        for i in range(size)
        if any(abs(fit.correlation[i, j]) >= threshold for j in range(size) if j != i)
    ]


@pytest.mark.parametrize("asimov", [False, True])
def test_scans_contours_and_limits_show_the_records(fit_inputs, tmp_path, monkeypatch, asimov):
    """Catches a scan curve not sorted or with a point lost, interval lines at the wrong place,
    a contour transposed or at other levels, the best-fit marker elsewhere, limit bands with the
    1 and 2 sigma ends swapped, and an observed limit drawn for an Asimov fit."""
    directory, _, _ = fit_inputs
    limits = dataclasses.replace(LimitResults.read(directory / "limits.json"), asimov=asimov)
    limits.write(tmp_path / "limits.json")
    with artists.captured_figures(monkeypatch) as figures:
        plot_scans.plot_scan(str(directory / "scan_mu.json"), tmp_path / "scan", STYLE)
        plot_scans.plot_contour(str(directory / "scan2d.json"), tmp_path / "contour", STYLE)
        plot_scans.plot_limits(str(tmp_path / "limits.json"), tmp_path / "limits", STYLE)
        scan_fig, contour_fig, limits_fig = figures
        artists.check_scan(scan_fig, ScanResults.read(directory / "scan_mu.json"))
        artists.check_contour(contour_fig, Scan2DResults.read(directory / "scan2d.json"))
        artists.check_limits(limits_fig, limits, math_name)
        assert [overlaps(fig, monkeypatch) for fig in figures] == [[], [], []]
