"""Figures and tables of the statistical model and its fits.

Inputs follow the results contract (DESIGN.md): ``histograms/histograms.root`` (``TH1D``
``{channel}/{process}/{variation}``), the pyhf workspace, ``fit/fit.json``, ``fit/pulls.json``,
``fit/ranking.json``, ``fit/scan_{poi}.json``, ``fit/scan2d.json`` and ``fit/limits.json``. The
model is built from the workspace as the inference stages build it (the same ``inference``
settings: patch, measurement, interpolation codes), so the bands belong to the fitted likelihood.

Post-fit uncertainty bands propagate the full correlated covariance of the fit: the expected
yields are linearised around the best fit (central finite differences of pyhf's
``expected_data``, the Jacobian J) and the band is sqrt(diag(J C J^T)), so anticorrelated
parameters shrink it as they should, unlike a sum of the parameters' effects in quadrature.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import multiprocessing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyhf
import uproot
from matplotlib.patches import Patch

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path, read_json
from analysis.plots.distributions import plot_stack
from analysis.plots.style import (
    PlotStyle,
    add_label,
    new_figure,
    ratio_with_errors,
    safe_name,
    save_figure,
    style_from_settings,
)
from analysis.stats import model as model_utils

#: Finite-difference step of the Jacobian, in units of each parameter's uncertainty: small
#: enough to stay in the linear regime of pyhf's interpolation, large enough for float noise.
JACOBIAN_STEP = 0.05

#: delta(-2 ln L) levels of 68% and 95% confidence regions for two parameters.
CONTOUR_LEVELS_2D = {"68%": 2.2788, "95%": 5.9915}


class Prediction(NamedTuple):
    """Expected yields of a model at some parameters, with their linearised uncertainties.

    ``yields`` is (samples x bins, all channels concatenated), ``jacobian`` is
    (samples x bins x parameters) and ``covariance`` the parameters' covariance.
    """

    samples: list[str]
    yields: np.ndarray
    jacobian: np.ndarray
    covariance: np.ndarray

    def uncertainty(self, weights: np.ndarray) -> np.ndarray:
        """Uncertainty of linear combinations of the yields: ``weights`` (k x samples x bins)
        gives k combinations (a bin's total, a channel's sum, ...), each with the full
        covariance."""
        gradients = np.einsum("ksb,sbp->kp", weights, self.jacobian)
        variance = np.einsum("kp,pq,kq->k", gradients, self.covariance, gradients)
        return np.sqrt(np.clip(variance, 0.0, None))


def load_model(
    workspace_path: str | Path, settings: Mapping[str, Any] | None = None
) -> tuple[pyhf.pdf.Model, np.ndarray | None]:
    """The model the inference stages fit and the workspace's observed main-bin counts.

    Args:
        workspace_path: the pyhf workspace that was fitted.
        settings: the config's ``inference`` section (patch, measurement, POIs, interpolation
            codes); the stages' defaults when absent.

    Returns:
        The model, and the observed counts of its channels concatenated (None when the workspace
        has no observations).
    """
    parsed = model_utils.model_settings(settings or {})
    workspace = model_utils.load_workspace(workspace_path, parsed.patch, parsed.patch_name)
    # Asimov here only spares needing observations: the data of the setup are not used
    model = model_utils.build(workspace, parsed._replace(asimov=True), str(workspace_path)).model
    try:
        observed = np.asarray(workspace.data(model, include_auxdata=False), dtype=float)
    except (KeyError, pyhf.exceptions.InvalidWorkspaceOperation):
        observed = None
    return model, observed


def prefit_parameters(model: pyhf.pdf.Model) -> tuple[np.ndarray, np.ndarray]:
    """Initial values and the pre-fit (diagonal) covariance: constrained parameters with their
    prior width, free ones (POIs, free normalisations) with zero width, as in a pre-fit band."""
    values = np.asarray(model.config.suggested_init(), dtype=float)
    widths = np.zeros_like(values)
    for name in model.config.par_order:
        parset = model.config.param_set(name)
        if parset.constrained:
            widths[model.config.par_slice(name)] = parset.width()
    return values, np.diag(widths**2)


def fitted_parameters(
    model: pyhf.pdf.Model, fit: Mapping[str, Any], fit_path: str = "fit.json"
) -> tuple[np.ndarray, np.ndarray]:
    """Best-fit values and full covariance from ``fit.json``, in the model's parameter order.

    The covariance is corr_ij * sigma_i * sigma_j of the contract's correlation matrix.
    """
    names = model.config.par_names
    bestfit = fit.get("bestfit", {})
    missing = [name for name in names if name not in bestfit]
    if missing:
        raise AnalysisError(
            f"{fit_path}: no best-fit value of {missing[0]!r}; the fit was made on another "
            "workspace, rerun the fit"
        )
    values = np.asarray([bestfit[name][0] for name in names], dtype=float)
    sigmas = np.asarray([bestfit[name][1] for name in names], dtype=float)
    correlation = fit.get("correlation", {})
    order = {name: index for index, name in enumerate(correlation.get("parameters", []))}
    matrix = np.asarray(correlation.get("matrix", []), dtype=float)
    lost = [name for name in names if name not in order]
    if lost:
        raise AnalysisError(f"{fit_path}: correlation lacks {lost[0]!r}; rerun the fit")
    index = np.asarray([order[name] for name in names])
    corr = matrix[np.ix_(index, index)]
    return values, corr * np.outer(sigmas, sigmas)


def predict(model: pyhf.pdf.Model, values: np.ndarray, covariance: np.ndarray) -> Prediction:
    """Per-sample expected yields at ``values`` and their Jacobian (central differences)."""

    def expected(parameters: np.ndarray) -> np.ndarray:
        return np.asarray(
            model.main_model.expected_data(parameters, return_by_sample=True), dtype=float
        )

    yields = expected(values)
    sigmas = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    jacobian = np.zeros((*yields.shape, len(values)))
    for index in np.flatnonzero(sigmas > 0):
        step = JACOBIAN_STEP * sigmas[index]
        shift = np.zeros_like(values)
        shift[index] = step
        jacobian[..., index] = (expected(values + shift) - expected(values - shift)) / (2 * step)
    return Prediction(list(model.config.samples), yields, jacobian, covariance)


def channel_slices(model: pyhf.pdf.Model) -> dict[str, slice]:
    """Bins of each channel in the concatenated main-model bins."""
    return {name: model.config.channel_slices[name] for name in model.config.channels}


def plot_prepostfit(
    workspace_path: str,
    fit_path: str,
    output_dir: str | Path,
    style: PlotStyle,
    binning: Mapping[str, Sequence[float]] | None = None,
    xlabels: Mapping[str, str] | None = None,
    model_settings: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Pre-fit and post-fit stacks of every channel, ``{channel}_prefit``/``{channel}_postfit``.

    Args:
        workspace_path: the pyhf workspace that was fitted.
        fit_path: its ``fit.json``.
        output_dir: where the figures go.
        style: the plot style.
        binning: channel -> bin edges (``histograms/binning.json``); bin index when absent.
        xlabels: channel -> x-axis title (``plots.observable_labels``).
        model_settings: the ``inference`` settings the fit was made with.
    """
    model, observed = load_model(workspace_path, model_settings)
    fit = read_json(fit_path)
    data = None if fit.get("asimov", False) else observed
    predictions = {
        "prefit": predict(model, *prefit_parameters(model)),
        "postfit": predict(model, *fitted_parameters(model, fit, fit_path)),
    }
    written: list[Path] = []
    nbins = model.config.nmaindata
    for channel, bins in channel_slices(model).items():
        width = bins.stop - bins.start
        edges = np.asarray((binning or {}).get(channel, np.arange(width + 1)), dtype=float)
        if len(edges) != width + 1:
            raise AnalysisError(
                f"binning of channel {channel!r} has {len(edges) - 1} bins, the workspace "
                f"{width}; rerun the histograms and workspace stages"
            )
        observable = "fitted observable" if channel in (binning or {}) else "bin index"
        # one combination per bin of the channel: the sum over samples of that bin
        weights = np.zeros((width, len(model.config.samples), nbins))
        for k in range(width):
            weights[k, :, bins.start + k] = 1.0
        for stage, prediction in predictions.items():
            stack = {
                sample: (prediction.yields[i, bins], np.zeros(width))
                for i, sample in enumerate(prediction.samples)
            }
            written += plot_stack(
                edges, stack, None if data is None else data[bins],
                (xlabels or {}).get(channel, f"{channel}: {observable}"),
                Path(output_dir) / f"{safe_name(channel)}_{stage}", style,
                band=prediction.uncertainty(weights),
                band_label="Pre-fit unc." if stage == "prefit" else "Post-fit unc.",
                title=f"{channel}, {stage.replace('fit', '-fit')}", log=True,
            )  # fmt: skip
    return written


def yields_tables(
    workspace_path: str, fit_path: str, model_settings: Mapping[str, Any] | None = None
) -> tuple[str, str]:
    """Pre- and post-fit yields per channel and sample, total and data, as markdown and LaTeX.

    Uncertainties of sums (a channel's total) use the full covariance like the bands.
    """
    model, data = load_model(workspace_path, model_settings)
    fit = read_json(fit_path)
    stages = {
        "pre-fit": predict(model, *prefit_parameters(model)),
        "post-fit": predict(model, *fitted_parameters(model, fit, fit_path)),
    }
    samples = list(model.config.samples)
    nbins = model.config.nmaindata
    markdown: list[str] = []
    latex = [r"\begin{tabular}{lrr}", r"\hline"]
    for channel, bins in channel_slices(model).items():
        # combinations: each sample summed over the channel's bins, then the total
        weights = np.zeros((len(samples) + 1, len(samples), nbins))
        for i in range(len(samples)):
            weights[i, i, bins] = 1.0
        weights[-1, :, bins] = 1.0
        cells = {}
        for stage, prediction in stages.items():
            values = np.einsum("ksb,sb->k", weights, prediction.yields)
            cells[stage] = list(zip(values, prediction.uncertainty(weights), strict=True))
        names = [*samples, "total"]
        markdown += [f"### {channel}", "", "| process | pre-fit | post-fit |", "|---|---|---|"]
        latex += [rf"\multicolumn{{3}}{{l}}{{\textbf{{{_tex(channel)}}}}} \\", r"\hline"]
        latex += [r"Process & Pre-fit & Post-fit \\", r"\hline"]
        for row, name in enumerate(names):
            pre, post = cells["pre-fit"][row], cells["post-fit"][row]
            markdown.append(
                f"| {name} | {pre[0]:.2f} ± {pre[1]:.2f} | {post[0]:.2f} ± {post[1]:.2f} |"
            )
            latex.append(
                f"{_tex(name)} & ${pre[0]:.2f} \\pm {pre[1]:.2f}$ & "
                f"${post[0]:.2f} \\pm {post[1]:.2f}$ \\\\"
            )
        observed = "Asimov" if fit.get("asimov") or data is None else f"{data[bins].sum():.0f}"
        markdown += [f"| data | {observed} | {observed} |", ""]
        latex += [f"Data & {observed} & {observed} \\\\", r"\hline"]
    latex.append(r"\end{tabular}")
    return "\n".join(markdown), "\n".join(latex) + "\n"


def _tex(text: str) -> str:
    return text.replace("_", r"\_")


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


def systematics(variations: Sequence[str]) -> list[str]:
    """Names of the systematics among variation names ``<syst>_up``/``<syst>_down``."""
    names = {v.rsplit("_", 1)[0] for v in variations if v.endswith(("_up", "_down"))}
    return sorted(names)


def plot_templates(
    histograms_path: str, output_dir: str | Path, style: PlotStyle, workers: int = 1
) -> list[Path]:
    """Nominal template with the up and down variation of every systematic, per channel and
    process, ``{channel}__{process}__{systematic}``, with variation/nominal in the ratio panel.

    A one-sided variation (an alternative sample) is drawn alone. There are hundreds of these
    figures in an analysis, so they are drawn by ``workers`` processes (output does not depend
    on it).
    """
    tasks = []
    for channel, processes in read_templates(histograms_path).items():
        for process, variations in processes.items():
            if "nominal" not in variations:
                raise AnalysisError(
                    f"{histograms_path}: {channel}/{process} has no nominal; rerun histograms"
                )
            for syst in systematics(list(variations)):
                selected = {
                    name: variations[name]
                    for name in ("nominal", f"{syst}_up", f"{syst}_down")
                    if name in variations
                }
                prefix = Path(output_dir) / f"{safe_name(channel)}__{safe_name(process)}__{syst}"
                tasks.append((channel, process, syst, selected, prefix, style))
    if workers <= 1:
        return [path for task in tasks for path in _template_figure(*task)]
    context = multiprocessing.get_context("spawn")  # no forked matplotlib state
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = pool.map(_template_figure, *zip(*tasks, strict=True))
        return [path for paths in results for path in paths]


def _template_figure(
    channel: str,
    process: str,
    syst: str,
    variations: Mapping[str, tuple],
    prefix: Path,
    style: PlotStyle,
) -> list[Path]:
    """One template figure (see :func:`plot_templates`)."""
    nominal, variances, edges = variations["nominal"]
    fig, (ax, rax) = new_figure(style, ratio=True)
    ax.stairs(nominal, edges, color="black", linewidth=2, label="nominal")
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, nominal, yerr=np.sqrt(variances), fmt="none", color="black")
    one, stat = ratio_with_errors(nominal, nominal, np.sqrt(variances))
    rax.fill_between(
        edges, np.append(one - stat, (one - stat)[-1]), np.append(one + stat, (one + stat)[-1]),
        step="post", color="#dddddd", label="stat. unc.",
    )  # fmt: skip
    for direction, color in (("up", "#bd1f01"), ("down", "#3f90da")):
        name = f"{syst}_{direction}"
        if name not in variations:
            continue
        values = variations[name][0]
        total = values.sum() / nominal.sum() - 1 if nominal.sum() else 0.0
        ax.stairs(values, edges, color=color, linewidth=2,
                  label=f"{direction} ({100 * total:+.1f}%)")  # fmt: skip
        ratio, _ = ratio_with_errors(values, nominal, np.zeros_like(values))
        rax.stairs(np.nan_to_num(ratio, nan=1.0), edges, color=color, linewidth=2)
    rax.axhline(1.0, color="gray", linestyle="--")
    rax.set_ylabel("Var. / nom.")
    rax.set_xlabel(f"{channel}: fitted observable")
    ax.set_ylabel("Events / bin")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    ax.legend(title=f"{channel}, {process}: {syst}", fontsize="small")
    add_label(ax, style, data=False)
    return save_figure(fig, prefix, style)


def _included(name: str, exclude: Sequence[str]) -> bool:
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def pulls(pulls_path: str | Path, exclude: Sequence[str] = ()) -> list[tuple[str, float, float]]:
    """(parameter, pull, constraint) of every constrained parameter of ``pulls.json`` (the pulls
    stage's record) not matching a pattern of ``exclude``."""
    record = read_json(pulls_path)
    entries = record.get("constrained") if isinstance(record, dict) else None
    if not isinstance(entries, list):
        raise AnalysisError(f"{pulls_path}: no 'constrained' list of pulls; rerun the pulls stage")
    return [
        (entry["parameter"], float(entry["pull"]), float(entry["constraint"]))
        for entry in entries
        if _included(entry["parameter"], exclude)
    ]


def plot_pulls(entries: Sequence[tuple[str, float, float]], prefix: str | Path, style: PlotStyle):
    """Pulls (points) with constraints (error bars) and the +-1, +-2 sigma bands."""
    fig, ax = new_figure(style, figsize=(9, 2.0 + 0.4 * max(len(entries), 1)))
    positions = np.arange(len(entries))[::-1]
    ax.axvspan(-2, 2, color="#ffe28a")
    ax.axvspan(-1, 1, color="#8fd19e")
    ax.axvline(0, color="gray", linestyle="--")
    ax.errorbar(
        [entry[1] for entry in entries], positions, xerr=[entry[2] for entry in entries],
        fmt="o", color="black", markersize=5,
    )  # fmt: skip
    ax.set_yticks(positions, [entry[0] for entry in entries], fontsize="small")
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
    ranking = read_json(ranking_path)
    fit = read_json(fit_path)
    if not isinstance(ranking, list):
        raise AnalysisError(f"{ranking_path}: expected a list of parameters; rerun the ranking")
    entries = ranking[:top]
    poi = fit.get("poi", "mu")
    height = 3.4 + 0.45 * max(len(entries), 1)
    fig, pull_ax = new_figure(style, figsize=(11, height))
    impact_ax = pull_ax.twiny()
    positions = np.arange(len(entries))[::-1]
    for key, color in (("up", "#bd1f01"), ("down", "#3f90da")):
        impact_ax.barh(positions, [e[f"impact_prefit_{key}"] for e in entries], height=0.7,
                       facecolor="none", edgecolor=color, linewidth=1.5)  # fmt: skip
        impact_ax.barh(positions, [e[f"impact_postfit_{key}"] for e in entries], height=0.7,
                       color=color, alpha=0.6)  # fmt: skip
    pull_ax.errorbar([e["pull"] for e in entries], positions,
                     xerr=[e["constraint"] for e in entries], fmt="o", color="black",
                     markersize=5, zorder=5)  # fmt: skip
    pull_ax.set_zorder(impact_ax.get_zorder() + 1)  # points above the bars
    pull_ax.patch.set_visible(False)
    # the zero line stops below the legend's rows
    pull_ax.axvline(
        0, ymax=(len(entries) + 0.5) / (len(entries) + 3.2), color="gray", linestyle="--"
    )
    pull_ax.set_xlim(-2.5, 2.5)
    pull_ax.set_xlabel(r"Pull $(\hat\theta - \theta_0) / \Delta\theta$")
    largest = max(
        [abs(e[f"impact_{s}_{d}"]) for e in entries for s in ("prefit", "postfit")
         for d in ("up", "down")] or [1.0]
    )  # fmt: skip
    impact_ax.set_xlim(-1.25 * largest, 1.25 * largest)
    impact_ax.set_xlabel(rf"$\Delta\hat{{{_math(poi)}}}$")
    pull_ax.set_yticks(positions, [e["parameter"] for e in entries], fontsize="small")
    pull_ax.minorticks_off()
    # two empty rows above the largest impact hold the legend, so it never covers a bar
    pull_ax.set_ylim(-1, len(entries) + 2.2)
    handles = [
        Patch(facecolor="none", edgecolor="black", label="Pre-fit"),
        Patch(color="#bd1f01", alpha=0.6, label=r"Post-fit $+1\sigma$"),
        Patch(color="#3f90da", alpha=0.6, label=r"Post-fit $-1\sigma$"),
    ]
    bestfit = fit.get("bestfit", {}).get(poi)
    title = (
        None
        if bestfit is None
        else rf"Impacts on $\hat{{{_math(poi)}}}$ = {bestfit[0]:.3f} ± {bestfit[1]:.3f}"
    )
    pull_ax.legend(
        handles=handles, fontsize="small", loc="upper center", ncol=3, title=title,
        title_fontsize="small",
    )  # fmt: skip
    # the impact axis occupies the top, so the experiment label goes above its tick labels
    pull_ax.set_title(
        rf"$\bf{{{style.experiment}}}$ {style.label}" if style.experiment else style.label,
        loc="left", pad=45, fontsize="medium",
    )  # fmt: skip
    pull_ax.set_title(style.lumi_text, loc="right", pad=45, fontsize="medium")
    return save_figure(fig, prefix, style)


def _math(name: str) -> str:
    """A parameter name for mathtext: ``mu`` and ``mu_X`` become a Greek mu (with subscript),
    other names keep their letters with underscores escaped."""
    if name == "mu":
        return r"\mu"
    if name.startswith("mu_"):
        return r"\mu_{\mathrm{" + name[3:].replace("_", r"\_") + "}}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


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
    fit = read_json(fit_path)
    try:
        names = list(fit["correlation"]["parameters"])
        matrix = np.asarray(fit["correlation"]["matrix"], dtype=float)
    except KeyError:
        raise AnalysisError(f"{fit_path}: no correlation matrix; rerun the fit") from None
    shown = [i for i, name in enumerate(names) if _included(name, exclude)]
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


def plot_scan(scan_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """Profile-likelihood scan with the 1 and 2 sigma lines and the 68% interval written on it."""
    scan = read_json(scan_path)
    for key in ("poi", "values", "delta_twice_nll"):
        if key not in scan:
            raise AnalysisError(f"{scan_path}: no {key!r}; rerun the scan")
    poi = scan["poi"]
    fig, ax = new_figure(style)
    order = np.argsort(scan["values"])
    values = np.asarray(scan["values"], dtype=float)[order]
    delta = np.asarray(scan["delta_twice_nll"], dtype=float)[order]
    ax.plot(values, delta, "o-", color="black", markersize=4, label="Profile likelihood")
    for level, text in ((1.0, r"1$\sigma$"), (4.0, r"2$\sigma$")):
        ax.axhline(level, color="gray", linestyle="--")
        ax.text(values[-1], level, text, ha="right", va="bottom", color="gray")
    lines = []
    if scan.get("bestfit"):
        lines.append(rf"$\hat{{{_math(poi)}}}$ = {scan['bestfit'][0]:.3f}")
    if scan.get("interval_68"):
        low, high = scan["interval_68"]
        lines.append(f"68% CL: [{_bound(low)}, {_bound(high)}]")
        for bound in (low, high):
            if bound is not None:
                ax.axvline(bound, color="#3f90da", linestyle=":")
    if scan.get("interval_95"):
        low, high = scan["interval_95"]
        lines.append(f"95% CL: [{_bound(low)}, {_bound(high)}]")
    ax.text(0.5, 0.95, "\n".join(lines), transform=ax.transAxes, ha="center", va="top")
    ax.set_ylim(0, max(5.0, 1.1 * float(np.nanmax(delta))))
    ax.set_xlim(values[0], values[-1])
    ax.set_xlabel(rf"${_math(poi)}$")
    ax.set_ylabel(r"$-2\Delta\ln L$")
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def _bound(value: float | None) -> str:
    return "open" if value is None else f"{value:.3f}"


def plot_contour(scan_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """68% and 95% CL contours of a two-POI scan (``scan2d.json``) with the best fit."""
    scan = read_json(scan_path)
    for key in ("pois", "x", "y", "delta_twice_nll"):
        if key not in scan:
            raise AnalysisError(f"{scan_path}: no {key!r}; rerun the 2D scan")
    xpoi, ypoi = scan["pois"]
    surface = np.asarray(scan["delta_twice_nll"], dtype=float)  # [i][j] at x_i, y_j
    fig, ax = new_figure(style)
    mesh = ax.pcolormesh(scan["x"], scan["y"], surface.T, cmap="viridis_r", shading="nearest")
    fig.colorbar(mesh, ax=ax, label=r"$-2\Delta\ln L$")
    contours = ax.contour(
        scan["x"], scan["y"], surface.T, levels=list(CONTOUR_LEVELS_2D.values()),
        colors=["white", "white"], linestyles=["solid", "dashed"],
    )  # fmt: skip
    ax.clabel(contours, fmt=dict(zip(contours.levels, CONTOUR_LEVELS_2D, strict=True)))
    bestfit = scan.get("bestfit", {})
    if xpoi in bestfit and ypoi in bestfit:
        ax.plot(bestfit[xpoi][0], bestfit[ypoi][0], "P", color="red", markersize=12,
                label="Best fit")  # fmt: skip
        ax.legend()
    ax.set_xlabel(rf"${_math(xpoi)}$")
    ax.set_ylabel(rf"${_math(ypoi)}$")
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def plot_limits(limits_path: str, prefix: str | Path, style: PlotStyle) -> list[Path]:
    """Upper limits per POI: expected median with its 1 and 2 sigma bands, and observed."""
    limits = read_json(limits_path)
    pois = limits.get("pois")
    if not pois:
        raise AnalysisError(f"{limits_path}: no 'pois'; rerun the limits")
    names = list(pois)
    fig, ax = new_figure(style, figsize=(10, 2.5 + 1.2 * len(names)))
    for row, name in enumerate(names[::-1]):
        entry = pois[name]
        ax.fill_betweenx([row - 0.4, row + 0.4], entry["expected_minus2sigma"],
                         entry["expected_plus2sigma"], color="#ffe28a",
                         label=r"Expected $\pm2\sigma$" if row == 0 else None)  # fmt: skip
        ax.fill_betweenx([row - 0.4, row + 0.4], entry["expected_minus1sigma"],
                         entry["expected_plus1sigma"], color="#8fd19e",
                         label=r"Expected $\pm1\sigma$" if row == 0 else None)  # fmt: skip
        ax.plot([entry["expected"]] * 2, [row - 0.4, row + 0.4], "k--",
                label="Expected" if row == 0 else None)  # fmt: skip
        if entry.get("observed") is not None and not limits.get("asimov"):
            ax.plot(entry["observed"], row, "o", color="black",
                    label="Observed" if row == 0 else None)  # fmt: skip
            ax.text(entry["expected_plus2sigma"], row, f"  obs. {entry['observed']:.2f}",
                    va="center")  # fmt: skip
        ax.text(entry["expected_minus2sigma"], row + 0.42, f"exp. {entry['expected']:.2f}",
                va="bottom", fontsize="small")  # fmt: skip
    ax.set_yticks(np.arange(len(names)), [rf"${_math(n)}$" for n in names[::-1]])
    ax.minorticks_off()
    ax.set_ylim(-0.7, len(names) - 0.1 + 0.8)
    level = limits.get("confidence_level") or 0.95
    ax.set_xlabel(f"{100 * level:.0f}% CL upper limit")
    ax.set_xlim(left=0)
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    add_label(ax, style)
    return save_figure(fig, prefix, style)


def write_text(path: str | Path, text: str) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@cli_main
def main(argv: Sequence[str] | None = None) -> None:
    """Command line: one subcommand per figure family (see ``--help``)."""
    parser = argparse.ArgumentParser(description="Figures of the statistical model and fits.")
    parser.add_argument("--settings", required=True, help="the plots config section as JSON")
    commands = parser.add_subparsers(dest="figure", required=True)
    templates = commands.add_parser("templates")
    templates.add_argument("--histograms", required=True)
    templates.add_argument("--output-dir", required=True)
    templates.add_argument("--workers", type=int, default=1, help="processes drawing figures")
    stacks = commands.add_parser("stacks", help="pre-/post-fit stacks and yields tables")
    stacks.add_argument("--workspace", required=True)
    stacks.add_argument("--model-settings", default="{}", help="the inference section as JSON")
    stacks.add_argument("--fit", required=True)
    stacks.add_argument("--binning", default=None)
    stacks.add_argument("--output-dir", required=True)
    stacks.add_argument("--markdown", required=True)
    stacks.add_argument("--latex", required=True)
    summary = commands.add_parser("summary", help="pulls, impacts, correlation matrix")
    summary.add_argument("--fit", required=True)
    summary.add_argument("--ranking", required=True)
    summary.add_argument("--pulls-record", required=True, help="pulls.json of the pulls stage")
    summary.add_argument("--pulls", required=True, help="output prefix")
    summary.add_argument("--impacts", required=True, help="output prefix")
    summary.add_argument("--correlation", required=True, help="output prefix")
    for name in ("scan", "contour", "limits"):
        command = commands.add_parser(name)
        command.add_argument("--input", required=True)
        command.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    style = style_from_settings(settings)
    if args.figure == "templates":
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        plot_templates(args.histograms, args.output_dir, style, args.workers)
    elif args.figure == "stacks":
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        binning = read_json(args.binning) if args.binning else None
        model_settings = json.loads(args.model_settings)
        plot_prepostfit(
            args.workspace, args.fit, args.output_dir, style, binning,
            settings.get("observable_labels"), model_settings,
        )  # fmt: skip
        markdown, latex = yields_tables(args.workspace, args.fit, model_settings)
        write_text(args.markdown, markdown)
        write_text(args.latex, latex)
    elif args.figure == "summary":
        exclude = settings.get("exclude_parameters", [])
        entries = pulls(args.pulls_record, exclude)
        plot_pulls(entries, args.pulls, style)
        plot_impacts(args.ranking, args.fit, int(settings["ranking_top"]), args.impacts, style)
        plot_correlation(
            args.fit, float(settings["correlation_threshold"]), args.correlation, style, exclude
        )
    elif args.figure == "scan":
        plot_scan(args.input, args.prefix, style)
    elif args.figure == "contour":
        plot_contour(args.input, args.prefix, style)
    else:
        plot_limits(args.input, args.prefix, style)


if __name__ == "__main__":
    raise SystemExit(main())
