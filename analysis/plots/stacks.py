"""Pre- and post-fit stacks of every channel with the yields tables, and the templates of every
systematic.

The stacks read the pyhf workspace and ``fit/fit.json`` (through :mod:`analysis.stats.results`);
their yields and bands come from :mod:`analysis.stats.prediction`, so nothing here builds a
likelihood. The templates read ``histograms/histograms.root`` (``TH1D``
``{channel}/{process}/{variation}``).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from matplotlib.ticker import MaxNLocator

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json
from analysis.core.tables import latex_row, markdown_section, tex, value_error, write_text
from analysis.core.variations import NOMINAL, Variation, sources
from analysis.core.variations import names as variation_names
from analysis.plots.cli import REQUIRED, WORKERS, Subcommand, command_line
from analysis.plots.stackplot import plot_stack
from analysis.plots.style import (
    PlotStyle,
    draw_figures,
    labelled_figure,
    ratio_with_errors,
    safe_name,
    save_figure,
)
from analysis.stats.prediction import ChannelYields, prefit_postfit
from analysis.stats.results import FitResults


def plot_prepostfit(
    workspace_path: str,
    fit_path: str,
    output_dir: str | Path,
    style: PlotStyle,
    binning: Mapping[str, Sequence[float]] | None = None,
    axes: Mapping[str, Mapping[str, Any]] | None = None,
    model_settings: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Pre-fit and post-fit stacks of every channel, ``{channel}_prefit``/``{channel}_postfit``.

    Args:
        workspace_path: the pyhf workspace that was fitted.
        fit_path: its ``fit.json``.
        output_dir: where the figures go.
        style: the plot style.
        binning: channel -> bin edges (``histograms/binning.json``); bin index when absent.
        axes: what each channel's x axis shows (see :func:`axis_title`).
        model_settings: the ``inference`` settings the fit was made with.
    """
    yields = prefit_postfit(workspace_path, FitResults.read(fit_path), model_settings, fit_path)
    written: list[Path] = []
    for channel in yields.prefit:
        edges = _channel_edges(channel, yields.prefit[channel].yields.shape[1], binning)
        xlabel = axis_title(channel, axes, style, binned=channel in (binning or {}))
        data = None if yields.observed is None else yields.observed[channel]
        for stage, prediction in (("prefit", yields.prefit), ("postfit", yields.postfit)):
            written += plot_stack(
                edges, _stack(prediction[channel]), data, xlabel,
                Path(output_dir) / f"{safe_name(channel)}_{stage}", style,
                band=prediction[channel].band,
                band_label="Pre-fit unc." if stage == "prefit" else "Post-fit unc.",
                title=f"{channel}, {stage.replace('fit', '-fit')}", log=True,
            )  # fmt: skip
    return written


def axis_title(
    channel: str,
    axes: Mapping[str, Mapping[str, Any]] | None,
    style: PlotStyle,
    binned: bool = True,
) -> str:
    """The x-axis title of a channel.

    ``axes`` maps a channel to ``title`` (``plots.observable_labels``, always used when given),
    ``nn`` (the class of an NN category: ``NN output: <class>``) or ``observable`` (the column,
    titled by its feature label). Without a title, a channel drawn by bin index (``binned``
    false) is titled ``Bin index``, and one not in ``axes`` ``<channel>: fitted observable``.
    """
    axis = (axes or {}).get(channel, {})
    if axis.get("title"):
        return str(axis["title"])
    if not binned:
        return "Bin index"
    if axis.get("nn"):
        return style.labels.nn_axis(str(axis["nn"]))
    if axis.get("observable"):
        return style.labels.feature(str(axis["observable"]))
    return f"{channel}: fitted observable"


def channel_axes(
    axes: Mapping[str, Mapping[str, Any]] | None, titles: Mapping[str, str] | None
) -> dict[str, dict[str, Any]]:
    """The channels' axes (``--axes``) with the configured titles (``plots.observable_labels``)
    added as ``title``."""
    merged = {channel: dict(axis) for channel, axis in (axes or {}).items()}
    for channel, title in (titles or {}).items():
        merged.setdefault(channel, {})["title"] = title
    return merged


def _channel_edges(
    channel: str, width: int, binning: Mapping[str, Sequence[float]] | None
) -> np.ndarray:
    """Bin edges of a channel: the fitted observable's when ``binning`` has the channel, else
    the bin index."""
    edges = np.asarray((binning or {}).get(channel, np.arange(width + 1)), dtype=float)
    if len(edges) != width + 1:
        raise AnalysisError(
            f"binning of channel {channel!r} has {len(edges) - 1} bins, the workspace "
            f"{width}; rerun the histograms and workspace stages"
        )
    return edges


def _stack(channel: ChannelYields) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The :func:`plot_stack` input of a channel: the fit's band replaces the statistical one, so
    the sums of squared weights are zero."""
    width = channel.yields.shape[1]
    return {
        sample: (channel.yields[i], np.zeros(width)) for i, sample in enumerate(channel.samples)
    }


def yields_tables(
    workspace_path: str, fit_path: str, model_settings: Mapping[str, Any] | None = None
) -> tuple[str, str]:
    """Pre- and post-fit yields per channel and sample, total and data, as markdown and LaTeX.

    Uncertainties of sums (a channel's total) use the full covariance like the bands.
    """
    yields = prefit_postfit(workspace_path, FitResults.read(fit_path), model_settings, fit_path)
    markdown: list[str] = []
    latex = [r"\begin{tabular}{lrr}", r"\hline"]
    for channel, prefit in yields.prefit.items():
        stages = (prefit, yields.postfit[channel])
        # (process, [(pre-fit yield, error), (post-fit yield, error)]), the total last
        rows = [
            (name, [(stage.sums[row], stage.sum_uncertainties[row]) for stage in stages])
            for row, name in enumerate([*prefit.samples, "total"])
        ]
        observed = "Asimov" if yields.observed is None else f"{yields.observed[channel].sum():.0f}"
        markdown += markdown_section(
            channel, ["process", "pre-fit", "post-fit"],
            [*([name, *(value_error(*cell) for cell in cells)] for name, cells in rows),
             ["data", observed, observed]],
        )  # fmt: skip
        latex += [
            rf"\multicolumn{{3}}{{l}}{{\textbf{{{tex(channel)}}}}} \\",
            r"\hline",
            latex_row(["Process", "Pre-fit", "Post-fit"]),
            r"\hline",
            *(latex_row([tex(name), *(value_error(*c, latex=True) for c in cells)])
              for name, cells in rows),
            latex_row(["Data", observed, observed]),
            r"\hline",
        ]  # fmt: skip
    latex.append(r"\end{tabular}")
    return "\n".join(markdown), "\n".join(latex) + "\n"


def read_templates(path: str | Path) -> dict[str, dict[str, dict[str, tuple]]]:
    """channel -> process -> variation -> (values, variances, edges) from histograms.root."""
    try:
        root = uproot.open(path)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found; run the histograms stage") from None
    templates: dict[str, dict[str, dict[str, tuple]]] = {}
    for key, classname in root.classnames(cycle=False).items():
        parts = key.split("/")
        if len(parts) != 3 or not classname.startswith("TH1"):
            continue
        channel, process, variation = parts
        hist = root[key]
        templates.setdefault(channel, {}).setdefault(process, {})[variation] = (
            hist.values(),
            hist.variances(),
            hist.axis().edges(),
        )
    if not templates:
        raise AnalysisError(f"{path}: no histograms named channel/process/variation")
    return templates


def plot_templates(
    histograms_path: str,
    output_dir: str | Path,
    style: PlotStyle,
    workers: int = 1,
    axes: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Nominal template with the up and down variation of every systematic, per channel and
    process, ``{channel}__{process}__{systematic}``, with variation/nominal in the ratio panel;
    ``axes`` titles the x axes (see :func:`axis_title`).

    A one-sided variation (an alternative sample) is drawn alone. There are hundreds of these
    figures in an analysis, so they are drawn by ``workers`` processes (output does not depend
    on it).
    """
    figures = []
    for channel, processes in read_templates(histograms_path).items():
        for process, variations in processes.items():
            if NOMINAL not in variations:
                raise AnalysisError(
                    f"{histograms_path}: {channel}/{process} has no nominal; rerun histograms"
                )
            for syst in sorted(sources(variations)):
                selected = {
                    name: variations[name]
                    for name in (NOMINAL, *variation_names(syst))
                    if name in variations
                }
                prefix = Path(output_dir) / f"{safe_name(channel)}__{safe_name(process)}__{syst}"
                title = f"{channel}, {style.labels.process(process)}: {syst}"
                xlabel = axis_title(channel, axes, style)
                figures.append(
                    functools.partial(
                        _template_figure, title, xlabel, syst, selected, prefix, style
                    )
                )
    return draw_figures(figures, workers)


def _template_figure(
    title: str,
    xlabel: str,
    syst: str,
    variations: Mapping[str, tuple],
    prefix: Path,
    style: PlotStyle,
) -> list[Path]:
    """One template figure (see :func:`plot_templates`)."""
    nominal, variances, edges = variations["nominal"]
    ylabels = ("Events / bin", "Var. / nom.")
    fig, (ax, rax) = labelled_figure(style, ratio=True, data=False, ylabels=ylabels)
    rax.axhline(1.0, color="gray", linestyle="--")
    # no tick labels at the panel's edges, where they would meet the x and upper-panel labels
    rax.yaxis.set_major_locator(MaxNLocator(nbins=4, prune="both"))
    ax.stairs(nominal, edges, color="black", linewidth=2, label="nominal")
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, nominal, yerr=np.sqrt(variances), fmt="none", color="black")
    one, stat = ratio_with_errors(nominal, nominal, np.sqrt(variances))
    rax.fill_between(
        edges, np.append(one - stat, (one - stat)[-1]), np.append(one + stat, (one + stat)[-1]),
        step="post", color="#dddddd", label="stat. unc.",
    )  # fmt: skip
    for direction, color in (("up", "#bd1f01"), ("down", "#3f90da")):
        name = Variation(syst, direction).name
        if name not in variations:
            continue
        values = variations[name][0]
        total = values.sum() / nominal.sum() - 1 if nominal.sum() else 0.0
        ax.stairs(values, edges, color=color, linewidth=2,
                  label=f"{direction} ({100 * total:+.1f}%)")  # fmt: skip
        ratio, _ = ratio_with_errors(values, nominal, np.zeros_like(values))
        rax.stairs(np.nan_to_num(ratio, nan=1.0), edges, color=color, linewidth=2)
    rax.set_xlabel(xlabel)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    ax.legend(title=title, fontsize="small")
    return save_figure(fig, prefix, style)


def _templates(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    axes = channel_axes(json.loads(args.axes), settings.get("observable_labels"))
    plot_templates(args.histograms, args.output_dir, style, args.workers, axes)


def _stacks(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    binning = read_json(args.binning) if args.binning else None
    model_settings = json.loads(args.model_settings)
    axes = channel_axes(json.loads(args.axes), settings.get("observable_labels"))
    plot_prepostfit(args.workspace, args.fit, args.output_dir, style, binning, axes, model_settings)
    markdown, latex = yields_tables(args.workspace, args.fit, model_settings)
    write_text(args.markdown, markdown)
    write_text(args.latex, latex)


#: The ``--axes`` option: what each channel's x axis shows.
AXES = {
    "default": "{}",
    "help": 'JSON {channel: {"nn": class} or {"observable": column}}: the x-axis titles',
}

SUBCOMMANDS = {
    "templates": Subcommand(
        _templates,
        {"--histograms": REQUIRED, "--output-dir": REQUIRED,
         "--workers": WORKERS,
         "--axes": AXES},
    ),
    "stacks": Subcommand(
        _stacks,
        {"--workspace": REQUIRED,
         "--model-settings": {"default": "{}", "help": "the inference section as JSON"},
         "--fit": REQUIRED, "--binning": {"default": None}, "--output-dir": REQUIRED,
         "--markdown": REQUIRED, "--latex": REQUIRED, "--axes": AXES},
        help="pre-/post-fit stacks and yields tables",
    ),
}  # fmt: skip


main = command_line("Pre-/post-fit stacks, yields tables and systematic templates.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
