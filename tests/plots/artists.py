"""What the fit figures show, read back from their matplotlib artists and compared with the JSON
files they are drawn from: pulls, impacts, correlations, scans, contours and limits.

Used on the small synthetic fit outputs (tests/plots/test_fit_values.py) and on the outputs of a
tiny toy workflow run (tests/workflow/test_per_process.py). Each ``check_*`` takes the figure as
drawn (captured before it is closed) and the record it was drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from analysis.plots.scans import CONTOUR_LEVELS_2D
from analysis.stats.results import (
    FitResults,
    Impact,
    LimitResults,
    Pull,
    Scan2DResults,
    ScanResults,
)

#: Agreement of drawn and recorded numbers (artists keep float64: only rounding in between).
CLOSE = 1e-9


@contextmanager
def captured_figures(monkeypatch) -> Iterator[list[Figure]]:
    """The figures the plot functions save, in order, kept open for reading (``plt.close`` is
    deferred to the end of the block)."""
    figures: list[Figure] = []
    close = plt.close
    with monkeypatch.context() as patch:
        patch.setattr(plt, "close", lambda fig=None: figures.append(fig))
        yield figures
    for fig in figures:
        close(fig)


def tick_labels(axis: Any) -> list[str]:
    """The tick labels of an axis (x or y) in tick order, empty ones left out."""
    return [label.get_text() for label in axis.get_ticklabels() if label.get_text()]


def rows_top_down(ax: Any) -> list[str]:
    """The y tick labels of ``ax`` from the top row down."""
    rows = dict(zip(ax.get_yticks(), tick_labels(ax.yaxis), strict=True))
    return [rows[y] for y in sorted(rows, reverse=True)]


def errorbar_points(ax: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, horizontal half-width) of the points of the one horizontal error bar of ``ax``."""
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    data_line, _, (bars,) = container.lines
    # [[x - e, y], [x + e, y]] per point; empty for a point without an error bar (NaN)
    half = [(s[1][0] - s[0][0]) / 2 if len(s) else np.nan for s in bars.get_segments()]
    return (
        np.asarray(data_line.get_xdata(), dtype=float),
        np.asarray(data_line.get_ydata(), dtype=float),
        np.asarray(half, dtype=float),
    )


def _by_row(ax: Any, values: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """``values`` keyed by the y tick label of their row ``rows``."""
    names = dict(zip(ax.get_yticks(), tick_labels(ax.yaxis), strict=True))
    return {names[row]: float(value) for row, value in zip(rows, values, strict=True)}


def check_pulls(fig: Figure, entries: Sequence[Pull]) -> None:
    """Each parameter's point at its pull, its error bar its constraint, named on its row, top
    row first (a pull drawn on another parameter's row, or the constraint as the error, fails)."""
    ax = fig.axes[0]
    x, y, half = errorbar_points(ax)
    assert rows_top_down(ax) == [e.parameter for e in entries]
    pulls, constraints = _by_row(ax, x, y), _by_row(ax, half, y)
    for entry in entries:
        assert abs(pulls[entry.parameter] - entry.pull) < CLOSE, entry.parameter
        assert abs(constraints[entry.parameter] - entry.constraint) < CLOSE, entry.parameter
    assert ax.get_xlabel()


def check_impacts(fig: Figure, entries: Sequence[Impact], fit: FitResults) -> None:
    """Pre-fit (open) and post-fit (filled) bars of each parameter as long as its impacts, up and
    down, on the row of its name, the pull points at the pulls, the POI's best fit in the
    legend's title."""
    pull_ax, impact_ax = fig.axes[:2]
    assert rows_top_down(pull_ax) == [e.parameter for e in entries]
    bars = [c for c in impact_ax.containers if isinstance(c, BarContainer)]
    # drawn per direction: pre-fit then post-fit, up then down
    kinds = [("prefit", "up"), ("postfit", "up"), ("prefit", "down"), ("postfit", "down")]
    assert len(bars) == len(kinds)
    for (stage, direction), container in zip(kinds, bars, strict=True):
        widths = np.array([patch.get_width() for patch in container.patches])
        rows = np.array([patch.get_y() + patch.get_height() / 2 for patch in container.patches])
        drawn = _by_row(pull_ax, widths, np.round(rows, 9))
        # open bars have a transparent face
        filled = {patch.get_facecolor()[3] > 0 for patch in container.patches}
        assert filled == {stage == "postfit"}, (stage, direction)
        for entry in entries:
            expected = getattr(entry, f"impact_{stage}_{direction}")
            assert abs(drawn[entry.parameter] - expected) < CLOSE, (entry.parameter, stage)
    x, y, half = errorbar_points(pull_ax)
    pulls, constraints = _by_row(pull_ax, x, y), _by_row(pull_ax, half, y)
    # a free parameter (pull None) has no point: NaN, which matplotlib leaves out
    expected = {e.parameter: [np.nan if v is None else v for v in (e.pull, e.constraint)]
                for e in entries}  # fmt: skip
    drawn = {name: [pulls[name], constraints[name]] for name in expected}
    for name in expected:
        np.testing.assert_allclose(drawn[name], expected[name], atol=CLOSE, err_msg=name)
    value, error = fit.bestfit(fit.poi)
    assert f"{value:.3f} ± {error:.3f}" in pull_ax.get_legend().get_title().get_text()
    assert impact_ax.get_xlabel() and pull_ax.get_xlabel()


def check_correlation(fig: Figure, fit: FitResults, shown: Sequence[str]) -> None:
    """The matrix image holds the fit's correlations of the ``shown`` parameters, in the order of
    the tick labels, and every cell's text is its value."""
    ax = fig.axes[0]
    names = tick_labels(ax.yaxis)
    assert names == list(shown) == tick_labels(ax.xaxis)
    index = [fit.labels.index(name) for name in names]
    expected = fit.correlation[np.ix_(index, index)]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected, atol=CLOSE)
    cells = [text.get_text() for text in ax.texts if _is_number(text.get_text())]
    assert sorted(cells) == sorted(f"{value:.2f}" for value in expected.ravel())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_scan(fig: Figure, scan: ScanResults) -> None:
    """The curve is the scan's points, sorted; the 68% interval's ends are drawn and written."""
    ax = fig.axes[0]
    (curve,) = [line for line in ax.lines if line.get_label() == "Profile likelihood"]
    order = np.argsort(scan.values)
    np.testing.assert_allclose(curve.get_xdata(), np.asarray(scan.values)[order], atol=CLOSE)
    np.testing.assert_allclose(
        curve.get_ydata(), np.asarray(scan.delta_twice_nll)[order], atol=CLOSE
    )
    verticals = sorted(
        float(line.get_xdata()[0]) for line in ax.lines
        if line is not curve and line.get_xdata()[0] == line.get_xdata()[1]
    )  # fmt: skip
    ends = [end for end in scan.interval_68 if end is not None]
    np.testing.assert_allclose(verticals, sorted(ends), atol=CLOSE)
    text = "\n".join(t.get_text() for t in ax.texts)
    assert f"= {scan.bestfit[0]:.3f}" in text
    for level, interval in (("68%", scan.interval_68), ("95%", scan.interval_95)):
        bounds = ", ".join("open" if end is None else f"{end:.3f}" for end in interval)
        assert f"{level} CL: [{bounds}]" in text
    assert ax.get_xlabel() and ax.get_ylabel()


def check_contour(fig: Figure, scan: Scan2DResults) -> None:
    """The colour mesh is the scan's surface, the contour lines are at the 68% and 95% levels of
    two parameters, the best-fit marker at the recorded best fit."""
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    np.testing.assert_allclose(
        np.asarray(mesh.get_array()).reshape(len(scan.y), len(scan.x)),
        np.asarray(scan.delta_twice_nll).T, atol=CLOSE,
    )  # fmt: skip
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    assert [list(c.levels) for c in contours] == [list(CONTOUR_LEVELS_2D.values())]
    (marker,) = [line for line in ax.lines if line.get_label() == "Best fit"]
    xpoi, ypoi = scan.pois
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (
        scan.bestfit[xpoi][0], scan.bestfit[ypoi][0]
    )  # fmt: skip
    assert ax.get_xlabel() and ax.get_ylabel()


def _x_range(collection: PolyCollection) -> tuple[float, float]:
    vertices = collection.get_paths()[0].vertices
    return float(vertices[:, 0].min()), float(vertices[:, 0].max())


def check_limits(fig: Figure, limits: LimitResults, math_name: Callable[[str], str]) -> None:
    """Per POI row (named by its tick label): the 2 and 1 sigma bands span the expected band's
    ends, the dashed line is at the expected limit, the point at the observed one (none for an
    Asimov fit), and both numbers are written."""
    ax = fig.axes[0]
    names = list(limits.pois)
    assert rows_top_down(ax) == [rf"${math_name(n)}$" for n in names]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2 * len(names)
    texts = [t.get_text().strip() for t in ax.texts]
    for row, name in enumerate(names[::-1]):
        entry = limits.pois[name]
        outer, inner = bands[2 * row], bands[2 * row + 1]
        np.testing.assert_allclose(
            _x_range(outer), (entry.expected_minus2sigma, entry.expected_plus2sigma), atol=CLOSE
        )
        np.testing.assert_allclose(
            _x_range(inner), (entry.expected_minus1sigma, entry.expected_plus1sigma), atol=CLOSE
        )
        assert f"exp. {entry.expected:.2f}" in texts
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"
                  and abs(np.mean(line.get_ydata()) - row) < 1e-9]  # fmt: skip
        assert [list(line.get_xdata()) for line in dashed] == [[entry.expected] * 2]
        points = [line for line in ax.lines if line.get_marker() == "o"
                  and list(line.get_ydata()) == [row]]  # fmt: skip
        if limits.asimov:
            assert not points and not any(text.startswith("obs.") for text in texts)
        else:
            assert [list(line.get_xdata()) for line in points] == [[entry.observed]]
            assert f"obs. {entry.observed:.2f}" in texts
    assert ax.get_xlabel()
