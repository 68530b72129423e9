"""Figures of the goodness-of-fit tests of the inputs (analysis/plots/gof.py)."""

from __future__ import annotations

import json

import numpy as np

from analysis.plots import gof as plot_gof
from analysis.stats.results import GofDistribution, GofResults, GofTest
from tests.plots.inputs import SETTINGS, png_ok

#: Variable a's test histogram: two samples in three bins, the fitted data observed.
DISTRIBUTION = GofDistribution(
    (0.0, 1.0, 2.5, 4.0), (True, True, False), ("ZTT", "TT"),
    ((50.0, 30.0, 10.0), (5.0, 8.0, 2.0)), (6.0, 4.0, 1.5),
    ((52.0, 31.0, 11.0), (5.5, 8.2, 2.1)), (3.0, 2.0, 1.0),
    (60.0, 37.0, 0.0),
)  # fmt: skip


def results() -> GofResults:
    tests = [
        GofTest(("a",), 10, 8.0, 9, 0.42, 0.5, 100, 0, 1, DISTRIBUTION),
        GofTest(("b",), 10, 9.0, 9, 0.03, 0.4, 100, 0, 2),
        GofTest(("a", "b"), 100, 99.0, 99, 0.77, 0.6, 100, 0, 3),
    ]
    return GofResults("asimov", tuple(tests), 1 / 3, 0.8)


def test_p_value_matrix_places_1d_on_the_diagonal_and_2d_off_it():
    """The 1D p-value sits at (i, i), the pair's at (i, j) and (j, i), untested cells NaN:
    catches a transposed or shifted matrix and a pair drawn only on one side."""
    names, matrix = plot_gof.p_value_matrix(results().tests)
    assert names == ["a", "b"]
    assert np.allclose(matrix, [[0.42, 0.77], [0.77, 0.03]])
    _, partial = plot_gof.p_value_matrix(results().tests[:2])
    assert np.isnan(partial[0, 1]) and partial[1, 1] == 0.03


def test_gof_figures_are_written(tmp_path):
    """Both figures in every configured format from a gof.json, through the command line:
    catches a figure family not wired to the command line or a wrong output name."""
    path = tmp_path / "gof.json"
    results().write(path)
    code = plot_gof.main(
        ["--settings", json.dumps(SETTINGS), "p-values", "--input", str(path),
         "--matrix", str(tmp_path / "matrix"), "--histogram", str(tmp_path / "histogram")]
    )  # fmt: skip
    assert code in (0, None)
    for name in ("matrix", "histogram"):
        png_ok(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.pdf").is_file()


def test_gof_distributions_are_drawn_for_single_variables(tmp_path):
    """Pre- and post-fit figures of each single-variable test that has its histogram, none for
    a pair, through the command line, and gof.json keeps the histogram when written and read:
    catches a lost field, figures of pairs, or a stage missing."""
    path = tmp_path / "gof.json"
    results().write(path)
    assert GofResults.read(path).tests[0].distribution == DISTRIBUTION
    code = plot_gof.main(
        ["--settings", json.dumps(SETTINGS), "distributions", "--input", str(path),
         "--output-dir", str(tmp_path / "distributions")]
    )  # fmt: skip
    assert code in (0, None)
    names = sorted(p.name for p in (tmp_path / "distributions").iterdir())
    assert names == ["a_postfit.pdf", "a_postfit.png", "a_prefit.pdf", "a_prefit.png"]
    png_ok(tmp_path / "distributions" / "a_postfit.png")
