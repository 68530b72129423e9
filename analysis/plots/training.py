"""Figures of the classifier: training curves, confusion matrices, ROC, scores, Taylor ranking.

Every function reads the training stage's JSON outputs (``train/fold<k>/history.json``,
``train/diagnostics.json``, ``train/taylor_ranking.json``); nothing here touches a model, so
restyling a figure never retrains or re-evaluates anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json
from analysis.plots.cli import REQUIRED, REQUIRED_LIST, Subcommand, command_line
from analysis.plots.style import PlotStyle, add_label, new_figure, process_colors, save_figure


def _require(data: Mapping[str, Any], keys: Sequence[str], path: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise AnalysisError(f"{path}: has no key {missing[0]!r}; rerun the train stage")


def plot_history(history_path: str, prefix: str, style: PlotStyle) -> list[Path]:
    """Loss and accuracy per epoch (training and validation) of one fold, best epoch marked.

    Args:
        history_path: ``train/fold<k>/history.json``.
        prefix: output path without extension.
        style: the plot style.
    """
    history = read_json(history_path)
    _require(history, ("loss", "val_loss", "accuracy", "val_accuracy", "best_epoch"), history_path)
    fig, (top, bottom) = new_figure(style, ratio=True, figsize=(10, 10))
    epochs = np.arange(1, len(history["loss"]) + 1)
    top.plot(epochs, history["loss"], label="training")
    top.plot(epochs, history["val_loss"], label="validation")
    bottom.plot(epochs, history["accuracy"], label="training")
    bottom.plot(epochs, history["val_accuracy"], label="validation")
    for ax in (top, bottom):
        # best_epoch counts from 0 in the history file, epochs from 1 on the axis
        ax.axvline(history["best_epoch"] + 1, color="gray", linestyle="--", label="best epoch")
    top.set_ylabel("Weighted loss")
    bottom.set_ylabel("Accuracy")
    bottom.set_xlabel("Epoch")
    top.legend(title=f"Fold {history.get('fold', '')}".strip())
    add_label(top, style, data=False, lumi=False)
    return save_figure(fig, prefix, style)


def plot_confusion(diagnostics_path: str, kind: str, prefix: str, style: PlotStyle) -> list[Path]:
    """A weighted confusion matrix normalised per true class (efficiency) or per predicted class
    (purity), with the value written in every cell.

    Args:
        diagnostics_path: ``train/diagnostics.json``.
        kind: ``efficiency`` or ``purity``.
        prefix: output path without extension.
        style: the plot style.
    """
    diagnostics = read_json(diagnostics_path)
    _require(diagnostics, ("classes", "confusion"), diagnostics_path)
    if kind not in diagnostics["confusion"]:
        raise AnalysisError(f"{diagnostics_path}: confusion has no {kind!r}; rerun the train stage")
    classes = diagnostics["classes"]
    matrix = np.asarray(diagnostics["confusion"][kind], dtype=float)
    fig, ax = new_figure(style, figsize=(10, 9))
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, f"{value:.2f}", ha="center", va="center", fontsize="small",
            color="white" if value > 0.6 else "black",
        )  # fmt: skip
    ticks = np.arange(len(classes))
    names = [style.labels.output(name) for name in classes]
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    return _save_matrix(
        fig, ax, image, ("Predicted class", "True class"), f"Weighted {kind}", prefix, style
    )


def plot_roc(diagnostics_path: str, prefix: str, style: PlotStyle) -> list[Path]:
    """One-vs-rest ROC curve of every class with its AUC in the legend (background efficiency
    on a log scale, where the working points of an analysis live)."""
    diagnostics = read_json(diagnostics_path)
    _require(diagnostics, ("classes", "roc"), diagnostics_path)
    fig, ax = new_figure(style)
    colors = process_colors(diagnostics["classes"], style)
    for name in diagnostics["classes"]:
        roc = diagnostics["roc"][name]
        fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
        keep = fpr > 0  # log axis
        label = f"{style.labels.output(name)} (AUC {roc['auc']:.3f})"
        ax.plot(tpr[keep], fpr[keep], color=colors[name], label=label)
    ax.set_yscale("log")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("Signal efficiency (true class)")
    ax.set_ylabel("Background efficiency (other classes)")
    ax.legend(loc="upper left")
    add_label(ax, style, data=False, lumi=False)
    return save_figure(fig, prefix, style)


def plot_scores(
    diagnostics_path: str, output_class: str, prefix: str, style: PlotStyle
) -> list[Path]:
    """Distribution of one output node's score per true class, training (points) and test
    (filled lines), with the Kolmogorov-Smirnov p-value of each pair in the legend.

    Args:
        diagnostics_path: ``train/diagnostics.json``.
        output_class: the network output whose score is shown.
        prefix: output path without extension.
        style: the plot style.
    """
    diagnostics = read_json(diagnostics_path)
    _require(diagnostics, ("classes", "scores"), diagnostics_path)
    scores = diagnostics["scores"]
    if output_class not in scores:
        raise AnalysisError(
            f"{diagnostics_path}: no scores for class {output_class!r}; "
            "check train.classes in the config"
        )
    edges = np.asarray(scores["bins"], dtype=float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    colors = process_colors(diagnostics["classes"], style)
    fig, ax = new_figure(style)
    for true_class, entry in scores[output_class].items():
        color = colors.get(true_class, "black")
        ax.stairs(entry["test"], edges, color=color, linewidth=2,
                  label=f"{style.labels.output(true_class)} test "
                        f"(KS p = {entry['ks_pvalue']:.2f})")  # fmt: skip
        ax.plot(centres, entry["train"], "o", color=color, markersize=5)
    ax.plot([], [], "o", color="black", label="training (points)")
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(style.labels.nn_axis(output_class))
    ax.set_ylabel("Normalised events")
    ax.legend(fontsize="small", ncol=2, loc="upper center")
    ax.set_ylim(top=ax.get_ylim()[1] * 50)  # room for the legend above the curves
    add_label(ax, style, data=False, lumi=False)
    return save_figure(fig, prefix, style)


def plot_taylor_matrix(taylor_path: str, prefix: str, style: PlotStyle) -> list[Path]:
    """First-order Taylor coefficients <|dy_c/dx_i|> as a matrix of classes x input features,
    each class row normalised to its largest coefficient so classes compare by ranking."""
    taylor = read_json(taylor_path)
    _require(taylor, ("features", "first_order"), taylor_path)
    features = taylor["features"]
    classes = list(taylor["first_order"])
    matrix = np.asarray([taylor["first_order"][name] for name in classes], dtype=float)
    largest = matrix.max(axis=1, keepdims=True)
    normalised = matrix / np.where(largest > 0, largest, 1.0)
    width = max(10.0, 0.8 * len(features))  # room for upright feature titles with units
    fig, ax = new_figure(style, figsize=(width, 2.0 + 0.9 * len(classes)))
    image = ax.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(
        np.arange(len(features)), [style.labels.feature(name) for name in features], rotation=90
    )
    ax.set_yticks(np.arange(len(classes)), [style.labels.output(name) for name in classes])
    return _save_matrix(
        fig, ax, image, ("Input feature", "Output class"),
        r"$\langle|t_i|\rangle$ / max per class", prefix, style,
    )  # fmt: skip


def _save_matrix(
    fig: Any,
    ax: Any,
    image: Any,
    axis_titles: tuple[str, str],
    colorbar_title: str,
    prefix: str | Path,
    style: PlotStyle,
) -> list[Path]:
    """Finish a matrix figure (titles of both axes, a colour bar, the label) and save it."""
    ax.minorticks_off()
    ax.set_xlabel(axis_titles[0])
    ax.set_ylabel(axis_titles[1])
    fig.colorbar(image, ax=ax, label=colorbar_title)
    add_label(ax, style, data=False, lumi=False)
    return save_figure(fig, prefix, style)


def plot_taylor_ranking(
    taylor_path: str, output_class: str, top: int, prefix: str, style: PlotStyle
) -> list[Path]:
    """Bar chart of the ``top`` largest first- and second-order Taylor coefficients of a class.

    Args:
        taylor_path: ``train/taylor_ranking.json``.
        output_class: the network output.
        top: how many terms (``plots.taylor_top``).
        prefix: output path without extension.
        style: the plot style.
    """
    taylor = read_json(taylor_path)
    _require(taylor, ("ranking",), taylor_path)
    if output_class not in taylor["ranking"]:
        raise AnalysisError(f"{taylor_path}: no ranking for class {output_class!r}")
    terms = sorted(taylor["ranking"][output_class], key=lambda term: -term["value"])[:top]
    labels = [", ".join(map(style.labels.feature, term["variables"])) for term in terms]
    values = [term["value"] for term in terms]
    colors = ["#3f90da" if term["order"] == 1 else "#ffa90e" for term in terms]
    fig, ax = new_figure(style, figsize=(10, 2.0 + 0.45 * len(terms)))
    positions = np.arange(len(terms))[::-1]  # largest on top
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, labels, fontsize="small")
    ax.minorticks_off()
    legend = [
        Patch(color="#3f90da", label="first order"),
        Patch(color="#ffa90e", label="second order"),
    ]
    ax.set_xlabel(r"$\langle|t|\rangle$ (Taylor coefficient)")
    ax.legend(handles=legend, title=f"class {style.labels.output(output_class)}", loc="lower right")
    add_label(ax, style, data=False, lumi=False)
    return save_figure(fig, prefix, style)


def _history(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    plot_history(args.history, args.prefix, style)


def _diagnostics(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    out = Path(args.output_dir)
    for kind in ("efficiency", "purity"):
        plot_confusion(args.diagnostics, kind, out / f"confusion_{kind}", style)
    plot_roc(args.diagnostics, out / "roc", style)
    for name in args.classes:
        plot_scores(args.diagnostics, name, out / f"scores_{name}", style)


def _taylor(args: argparse.Namespace, settings: Mapping[str, Any], style: PlotStyle) -> None:
    out = Path(args.output_dir)
    plot_taylor_matrix(args.taylor, out / "taylor_first_order", style)
    for name in args.classes:
        plot_taylor_ranking(
            args.taylor, name, int(settings["taylor_top"]), out / f"taylor_{name}", style
        )


SUBCOMMANDS = {
    "history": Subcommand(_history, {"--history": REQUIRED, "--prefix": REQUIRED}),
    "diagnostics": Subcommand(
        _diagnostics,
        {"--diagnostics": REQUIRED, "--classes": REQUIRED_LIST, "--output-dir": REQUIRED},
        help="confusion matrices, ROC, scores",
    ),
    "taylor": Subcommand(
        _taylor, {"--taylor": REQUIRED, "--classes": REQUIRED_LIST, "--output-dir": REQUIRED}
    ),
}


main = command_line("Classifier figures from the train outputs.", SUBCOMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
