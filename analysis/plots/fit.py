"""Figures of the fit result: pulls, impacts and the correlation matrix.

Inputs are read through :mod:`analysis.stats.results`: ``fit/fit.json``, ``fit/pulls.json`` and
``fit/ranking.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch

from analysis.plots.cli import REQUIRED, Subcommand, command_line
from analysis.plots.style import PlotStyle, add_label, math_name, new_figure, save_figure
from analysis.stats.model import matches_any
from analysis.stats.results import FitResults, Impact, Pull, PullsResults, RankingResults


def plot_pulls(entries: Sequence[Pull], prefix: str | Path, style: PlotStyle) -> list[Path]:
    """Pulls (points) with constraints (error bars) and the +-1, +-2 sigma bands."""
    fig, ax = new_figure(style, figsize=(9, 2.0 + 0.4 * max(len(entries), 1)))
    positions = np.arange(len(entries))[::-1]
    ax.axvspan(-2, 2, color="#ffe28a")
    ax.axvspan(-1, 1, color="#8fd19e")
    ax.axvline(0, color="gray", linestyle="--")
    ax.errorbar(
        [entry.pull for entry in entries], positions, xerr=[entry.constraint for entry in entries],
        fmt="o", color="black", markersize=5,
    )  # fmt: skip
    ax.set_yticks(positions, [entry.parameter for entry in entries], fontsize="small")
    ax.minorticks_off()
    ax.set_ylim(-1, len(entries))
    ax.set_xlim(-3, 3)
    ax.set_xlabel(r"$(\hat\theta - \theta_0) / \Delta\theta$")
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def plot_impacts(
    ranking_path: str, fit_path: str, top: int, prefix: str | Path, style: PlotStyle
) -> list[Path]:
    """Combine-style impacts: the ``top`` parameters of ``ranking.json``, pre-fit impacts as
    open and post-fit impacts as filled bars (top axis, POI shift), pulls with constraints as
    points (bottom axis)."""
    entries = RankingResults.read(ranking_path).impacts[:top]
    fit = FitResults.read(fit_path)
    height = 3.4 + 0.45 * max(len(entries), 1)
    fig, pull_ax = new_figure(style, figsize=(11, height))
    impact_ax = pull_ax.twiny()
    positions = np.arange(len(entries))[::-1]
    _draw_impact_bars(impact_ax, entries, positions)
    _draw_impact_pulls(pull_ax, impact_ax, entries, positions)
    _impact_axis(impact_ax, entries, fit.poi)
    pull_ax.set_yticks(positions, [e.parameter for e in entries], fontsize="small")
    pull_ax.minorticks_off()
    # two empty rows above the largest impact hold the legend, so it never covers a bar
    pull_ax.set_ylim(-1, len(entries) + 2.2)
    _impacts_legend_and_label(pull_ax, impact_ax, fit, style)
    return save_figure(fig, prefix, style)


def _draw_impact_bars(impact_ax: Any, entries: Sequence[Impact], positions: np.ndarray) -> None:
    """Pre-fit impacts as open and post-fit impacts as filled bars, up and down."""
    for key, color in (("up", "#bd1f01"), ("down", "#3f90da")):
        prefit = [getattr(e, f"impact_prefit_{key}") for e in entries]
        postfit = [getattr(e, f"impact_postfit_{key}") for e in entries]
        impact_ax.barh(positions, prefit, height=0.7, facecolor="none", edgecolor=color,
                       linewidth=1.5)  # fmt: skip
        impact_ax.barh(positions, postfit, height=0.7, color=color, alpha=0.6)


def _draw_impact_pulls(
    pull_ax: Any, impact_ax: Any, entries: Sequence[Impact], positions: np.ndarray
) -> None:
    """Pulls with constraints as points above the bars, and the pull axis. A free parameter (a
    normfactor, e.g. another POI) has no prior and so no pull: its row has no point."""
    pulls = [np.nan if e.pull is None else e.pull for e in entries]
    constraints = [np.nan if e.constraint is None else e.constraint for e in entries]
    pull_ax.errorbar(pulls, positions, xerr=constraints, fmt="o", color="black", markersize=5,
                     zorder=5)  # fmt: skip
    pull_ax.set_zorder(impact_ax.get_zorder() + 1)  # points above the bars
    pull_ax.patch.set_visible(False)
    # the zero line stops below the legend's rows
    pull_ax.axvline(
        0, ymax=(len(entries) + 0.5) / (len(entries) + 3.2), color="gray", linestyle="--"
    )
    pull_ax.set_xlim(-2.5, 2.5)
    pull_ax.set_xlabel(r"Pull $(\hat\theta - \theta_0) / \Delta\theta$")


def _impact_axis(impact_ax: Any, entries: Sequence[Impact], poi: str) -> None:
    """The impact axis, symmetric around zero and a quarter wider than the largest impact."""
    largest = max(
        [abs(getattr(e, f"impact_{s}_{d}")) for e in entries for s in ("prefit", "postfit")
         for d in ("up", "down")] or [1.0]
    )  # fmt: skip
    impact_ax.set_xlim(-1.25 * largest, 1.25 * largest)
    # labelpad: the hat of the title clears the tick labels below it
    impact_ax.set_xlabel(rf"$\Delta\hat{{{math_name(poi)}}}$", labelpad=12)


def _impacts_legend_and_label(
    pull_ax: Any, impact_ax: Any, fit: FitResults, style: PlotStyle
) -> None:
    """The legend, titled with the POI's best fit, and the experiment label above the top axis."""
    handles = [
        Patch(facecolor="none", edgecolor="black", label="Pre-fit"),
        Patch(color="#bd1f01", alpha=0.6, label=r"Post-fit $+1\sigma$"),
        Patch(color="#3f90da", alpha=0.6, label=r"Post-fit $-1\sigma$"),
    ]
    value, error = fit.bestfit(fit.poi)
    title = rf"Impacts on $\hat{{{math_name(fit.poi)}}}$ = {value:.3f} ± {error:.3f}"
    pull_ax.legend(
        handles=handles, fontsize="small", loc="upper center", ncol=3, title=title,
        title_fontsize="small",
    )  # fmt: skip
    # the impact axis occupies the top, so the experiment label goes above its tick labels
    add_label(pull_ax, style, above=impact_ax.xaxis)


def plot_correlation(
    fit_path: str,
    threshold: float,
    prefix: str | Path,
    style: PlotStyle,
    exclude: Sequence[str] = (),
) -> list[Path]:
    """Correlation matrix of the parameters that have at least one correlation above
    ``threshold`` in absolute value (``plots.correlation_threshold``) with another shown
    parameter; parameters matching a pattern of ``exclude`` (``plots.exclude_parameters``) are
    left out."""
    fit = FitResults.read(fit_path)
    names, matrix = list(fit.labels), fit.correlation
    shown = [i for i, name in enumerate(names) if not matches_any(name, exclude)]
    names = [names[i] for i in shown]
    matrix = matrix[np.ix_(shown, shown)]
    off = np.abs(matrix - np.diag(np.diag(matrix)))
    keep = np.flatnonzero(np.nanmax(off, axis=1, initial=0.0) >= threshold)
    matrix = matrix[np.ix_(keep, keep)]
    labels = [names[i] for i in keep]
    size = 4.0 + 0.45 * len(labels)
    fig, ax = new_figure(style, figsize=(size + 2, size))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    if len(labels) <= 25:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize="small")
    ax.set_yticks(np.arange(len(labels)), labels, fontsize="small")
    ax.minorticks_off()
    fig.colorbar(image, ax=ax, label="Correlation", fraction=0.046)
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def _summary(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    exclude = settings.get("exclude_parameters", [])
    record = PullsResults.read(args.pulls_record)
    shown = [pull for pull in record.constrained if not matches_any(pull.parameter, exclude)]
    plot_pulls(shown, args.pulls, style)
    plot_impacts(args.ranking, args.fit, int(settings["ranking_top"]), args.impacts, style)
    plot_correlation(
        args.fit, float(settings["correlation_threshold"]), args.correlation, style, exclude
    )


SUBCOMMANDS = {
    "summary": Subcommand(
        _summary,
        {"--fit": REQUIRED, "--ranking": REQUIRED,
         "--pulls-record": {**REQUIRED, "help": "pulls.json of the pulls stage"},
         "--pulls": {**REQUIRED, "help": "output prefix"},
         "--impacts": {**REQUIRED, "help": "output prefix"},
         "--correlation": {**REQUIRED, "help": "output prefix"}},
        help="pulls, impacts, correlation matrix",
    ),
}  # fmt: skip


main = command_line("Figures of the fit: pulls, impacts and correlations.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
