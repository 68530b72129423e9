"""Figures of the likelihood scans and limits: 1D profile scans, 2D contours and upper limits.

Inputs are read through :mod:`analysis.stats.results`: ``fit/scan_{poi}.json``,
``fit/scan2d.json`` and ``fit/limits.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.core.errors import AnalysisError
from analysis.plots.cli import REQUIRED, Subcommand, command_line
from analysis.plots.style import PlotStyle, add_label, math_name, new_figure, save_figure
from analysis.stats.results import LimitResults, Scan2DResults, ScanResults

#: delta(-2 ln L) levels of 68% and 95% confidence regions for two parameters.
CONTOUR_LEVELS_2D = {"68%": 2.2788, "95%": 5.9915}


def plot_scan(scan_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """Profile-likelihood scan with the 1 and 2 sigma lines and the 68% interval written on it."""
    scan = ScanResults.read(scan_path)
    poi = scan.poi
    fig, ax = new_figure(style)
    order = np.argsort(scan.values)
    values = np.asarray(scan.values, dtype=float)[order]
    delta = np.asarray(scan.delta_twice_nll, dtype=float)[order]
    ax.plot(values, delta, "o-", color="black", markersize=4, label="Profile likelihood")
    for level, text in ((1.0, r"1$\sigma$"), (4.0, r"2$\sigma$")):
        ax.axhline(level, color="gray", linestyle="--")
        ax.text(values[-1], level, text, ha="right", va="bottom", color="gray")
    lines = [rf"$\hat{{{math_name(poi)}}}$ = {scan.bestfit[0]:.3f}"]
    low, high = scan.interval_68
    lines.append(f"68% CL: [{_bound(low)}, {_bound(high)}]")
    for bound in (low, high):
        if bound is not None:
            ax.axvline(bound, color="#3f90da", linestyle=":")
    low, high = scan.interval_95
    lines.append(f"95% CL: [{_bound(low)}, {_bound(high)}]")
    ax.text(0.5, 0.95, "\n".join(lines), transform=ax.transAxes, ha="center", va="top")
    ax.set_ylim(0, max(5.0, 1.1 * float(np.nanmax(delta))))
    # no "0" in the corner, where it would meet the first x tick label
    ax.yaxis.set_major_locator(MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10], prune="lower"))
    ax.set_xlim(values[0], values[-1])
    ax.set_xlabel(rf"${math_name(poi)}$")
    ax.set_ylabel(r"$-2\Delta\ln L$")
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def _bound(value: float | None) -> str:
    return "open" if value is None else f"{value:.3f}"


def plot_contour(scan_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """68% and 95% CL contours of a two-POI scan (``scan2d.json``) with the best fit."""
    scan = Scan2DResults.read(scan_path)
    xpoi, ypoi = scan.pois
    surface = scan.delta_twice_nll  # [i][j] at x_i, y_j
    fig, ax = new_figure(style)
    mesh = ax.pcolormesh(scan.x, scan.y, surface.T, cmap="viridis_r", shading="nearest")
    fig.colorbar(mesh, ax=ax, label=r"$-2\Delta\ln L$")
    contours = ax.contour(
        scan.x, scan.y, surface.T, levels=list(CONTOUR_LEVELS_2D.values()),
        colors=["white", "white"], linestyles=["solid", "dashed"],
    )  # fmt: skip
    ax.clabel(contours, fmt=dict(zip(contours.levels, CONTOUR_LEVELS_2D, strict=True)))
    ax.plot(scan.bestfit[xpoi][0], scan.bestfit[ypoi][0], "P", color="red", markersize=12,
            label="Best fit")  # fmt: skip
    ax.legend()
    ax.set_xlabel(rf"${math_name(xpoi)}$")
    ax.set_ylabel(rf"${math_name(ypoi)}$")
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def plot_limits(limits_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """Upper limits per POI: expected median with its 1 and 2 sigma bands, and observed."""
    limits = LimitResults.read(limits_path)
    if not limits.pois:
        raise AnalysisError(f"{limits_path}: no 'pois'; rerun the limits")
    names = list(limits.pois)
    fig, ax = new_figure(style, figsize=(10, 2.5 + 1.2 * len(names)))
    for row, name in enumerate(names[::-1]):
        entry = limits.pois[name]
        ax.fill_betweenx([row - 0.4, row + 0.4], entry.expected_minus2sigma,
                         entry.expected_plus2sigma, color="#ffe28a",
                         label=r"Expected $\pm2\sigma$" if row == 0 else None)  # fmt: skip
        ax.fill_betweenx([row - 0.4, row + 0.4], entry.expected_minus1sigma,
                         entry.expected_plus1sigma, color="#8fd19e",
                         label=r"Expected $\pm1\sigma$" if row == 0 else None)  # fmt: skip
        ax.plot([entry.expected] * 2, [row - 0.4, row + 0.4], "k--",
                label="Expected" if row == 0 else None)  # fmt: skip
        if not limits.asimov:
            ax.plot(entry.observed, row, "o", color="black",
                    label="Observed" if row == 0 else None)  # fmt: skip
            ax.text(entry.expected_plus2sigma, row, f"  obs. {entry.observed:.2f}",
                    va="center")  # fmt: skip
        ax.text(entry.expected_minus2sigma, row + 0.42, f"exp. {entry.expected:.2f}",
                va="bottom", fontsize="small")  # fmt: skip
    ax.set_yticks(np.arange(len(names)), [rf"${math_name(n)}$" for n in names[::-1]])
    ax.minorticks_off()
    ax.set_ylim(-0.7, len(names) - 0.1 + 0.8)
    level = limits.confidence_level or 0.95
    ax.set_xlabel(f"{100 * level:.0f}% CL upper limit")
    ax.set_xlim(left=0)
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def _from_input(
    plot: Callable[[str, str | Path, PlotStyle], list[Path]],
) -> Callable[[argparse.Namespace, Mapping[str, Any], PlotStyle], list[Path]]:
    """The subcommand drawing ``plot`` of its ``--input`` file at its ``--prefix``."""
    return lambda args, settings, style: plot(args.input, args.prefix, style)


SUBCOMMANDS = {
    name: Subcommand(_from_input(plot), {"--input": REQUIRED, "--prefix": REQUIRED})
    for name, plot in (("scan", plot_scan), ("contour", plot_contour), ("limits", plot_limits))
}


main = command_line("Figures of the likelihood scans and upper limits.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
