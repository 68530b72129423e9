"""Figures of the goodness-of-fit tests of the input variables (``gof/gof.json``).

The p-value matrix (the 1D test of each variable on the diagonal, the 2D test of each pair off
it, in percent), the histogram of the p-values with the uniform distribution they follow when
the model describes every input, and each variable's histogram of its test before and after the
fit (drawn from the yields the test wrote; nothing is refitted here).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.errors import AnalysisError
from analysis.plots.cli import REQUIRED, WORKERS, Subcommand, command_line
from analysis.plots.labels import labels_from_settings
from analysis.plots.stackplot import plot_stack
from analysis.plots.style import (
    PlotStyle,
    add_label,
    draw_figures,
    new_figure,
    safe_name,
    save_figure,
)
from analysis.stats.results import GofResults, GofTest

#: Bins of the p-value histogram.
HISTOGRAM_BINS = 10


def p_value_matrix(tests: Sequence[GofTest]) -> tuple[list[str], np.ndarray]:
    """The variables in test order and the symmetric matrix of toy p-values (NaN: not tested)."""
    names: list[str] = []
    for test in tests:
        names += [name for name in test.variables if name not in names]
    matrix = np.full((len(names), len(names)), np.nan)
    for test in tests:
        rows = [names.index(name) for name in test.variables]
        first, second = rows[0], rows[-1]
        matrix[first, second] = matrix[second, first] = test.p_value
    return names, matrix


def plot_matrix(
    results: GofResults, prefix: str | Path, style: PlotStyle, labels: Mapping[str, str]
) -> list[Path]:
    """The p-value matrix in percent: 1D tests on the diagonal, 2D tests off it."""
    names, matrix = p_value_matrix(results.tests)
    size = 4.0 + 0.55 * len(names)
    fig, ax = new_figure(style, figsize=(size + 2.0, size))
    image = ax.imshow(100 * matrix, cmap="RdYlGn", vmin=0.0, vmax=100.0, origin="lower")
    if len(names) <= 30:  # the numbers stay readable
        for (row, column), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(column, row, f"{100 * value:.0f}", ha="center", va="center",
                        fontsize="x-small")  # fmt: skip
    ticks = np.arange(len(names))
    texts = [labels.get(name, name) for name in names]
    ax.set_xticks(ticks, texts, rotation=90, fontsize="x-small")
    ax.set_yticks(ticks, texts, fontsize="x-small")
    ax.minorticks_off()
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(f"Toy p-value (%), {_data_text(results)}")
    add_label(ax, style, data=results.data == "observed")
    return save_figure(fig, prefix, style)


def plot_histogram(results: GofResults, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """The toy p-values of every test with the uniform expectation."""
    p_values = np.array([test.p_value for test in results.tests], dtype=float)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    counts = np.histogram(np.clip(p_values, 0.0, 1.0), edges)[0]
    fig, ax = new_figure(style)
    ax.stairs(counts, edges, color="black", label=f"{len(p_values)} tests ({_data_text(results)})")
    expected = len(p_values) / HISTOGRAM_BINS
    ax.axhline(expected, color="tab:blue", linestyle="--", label="Uniform expectation")
    ax.fill_between([0.0, 1.0], expected - np.sqrt(expected), expected + np.sqrt(expected),
                    color="tab:blue", alpha=0.2, label=r"$\pm 1\sigma$ (Poisson)")  # fmt: skip
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.6 * max(counts.max(initial=0), expected + np.sqrt(expected)))
    ax.set_xlabel("Toy p-value")
    ax.set_ylabel("Tests")
    ax.legend(loc="upper right", fontsize="small",
              title=f"KS uniformity p-value {results.uniformity_p_value:.2f}")  # fmt: skip
    add_label(ax, style, data=results.data == "observed")
    return save_figure(fig, prefix, style)


def plot_distributions(
    results: GofResults, output_dir: str | Path, style: PlotStyle, workers: int = 1
) -> list[Path]:
    """Each single-variable test's stacked histogram before and after its fit,
    ``{variable}_prefit`` and ``{variable}_postfit`` in ``output_dir``, with the fitted data where
    they are the observed data (bins left out of the test shaded), the band of the constraints
    (pre-fit) or of the fit's covariance (post-fit); drawn by ``workers`` processes."""
    figures = []
    for test in results.tests:
        shown = test.distribution
        if shown is None:
            continue
        variable = test.variables[0]
        edges = np.asarray(shown.edges, dtype=float)
        data = None if shown.data is None else np.asarray(shown.data, dtype=float)
        stages = (("prefit", shown.prefit, shown.prefit_band),
                  ("postfit", shown.postfit, shown.postfit_band))  # fmt: skip
        for stage, yields, band in stages:
            stack = {
                sample: (np.asarray(row, dtype=float), np.zeros(len(row)))
                for sample, row in zip(shown.samples, yields, strict=True)
            }
            figures.append(functools.partial(
                plot_stack, edges, stack, data, style.labels.feature(variable),
                Path(output_dir) / f"{safe_name(variable)}_{stage}", style,
                band=np.asarray(band, dtype=float),
                band_label="Pre-fit unc." if stage == "prefit" else "Post-fit unc.",
                title=f"{_data_text(results).capitalize()}, {stage.replace('fit', '-fit')}",
                blinded=None if data is None else ~np.asarray(shown.fitted, dtype=bool),
            ))  # fmt: skip
    return draw_figures(figures, workers)


def _data_text(results: GofResults) -> str:
    return {"observed": "data", "asimov": "Asimov data", "pseudo": "pseudo-data"}.get(
        results.data, results.data
    )


def _draw(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    results = GofResults.read(args.input)
    if not results.tests:
        raise AnalysisError(f"{args.input}: no tests; rerun the gof target")
    labels = labels_from_settings(settings.get("labels")).features
    plot_matrix(results, args.matrix, style, labels)
    plot_histogram(results, args.histogram, style)


def _distributions(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    results = GofResults.read(args.input)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    plot_distributions(results, args.output_dir, style, args.workers)


SUBCOMMANDS = {
    "p-values": Subcommand(
        _draw, {"--input": REQUIRED, "--matrix": REQUIRED, "--histogram": REQUIRED}
    ),
    "distributions": Subcommand(
        _distributions, {"--input": REQUIRED, "--output-dir": REQUIRED, "--workers": WORKERS}
    ),
}

main = command_line("Figures of the goodness-of-fit tests of the input variables.", SUBCOMMANDS)

if __name__ == "__main__":
    raise SystemExit(main())
