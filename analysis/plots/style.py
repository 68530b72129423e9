"""Shared style of every figure: mplhep experiment style, labels, colours and saving.

All figure modules (``training``, ``distributions``, ``stacks``, ``fit``, ``scans``) take a
:class:`PlotStyle` built from the config's ``plots`` section, so restyling (label, luminosity text,
formats, resolution) is a config edit that reruns only the plot rules.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import pickle
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # plots are files, never windows; also makes CI and cluster nodes work

import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib._pylab_helpers import Gcf  # noqa: E402
from matplotlib.transforms import Bbox, TransformNode  # noqa: E402

from analysis.core.errors import AnalysisError  # noqa: E402
from analysis.core.io import atomic_path  # noqa: E402
from analysis.plots.fonts import reuse_font_subsets  # noqa: E402
from analysis.plots.labels import Labels, labels_from_settings  # noqa: E402

reuse_font_subsets()  # the PDF of every figure embeds its fonts; most glyph sets repeat

#: mplhep styles a user can pick (``plots.style``), each with mplhep's experiment-label function.
EXPERIMENT_LABELS = {
    "CMS": mplhep.cms.label,
    "ATLAS": mplhep.atlas.label,
    "LHCb2": mplhep.lhcb.label,
    "ALICE": mplhep.alice.label,
    "ROOT": mplhep.label.exp_label,
}
STYLES = tuple(EXPERIMENT_LABELS)

#: Smallest gap between the experiment label and the luminosity text, in font heights.
HEADER_GAP = 1.0

#: Colours for processes without one in ``plots.colors``: a colour-blind friendly cycle
#: (Petroff 2021, the 10-colour set recommended by CMS).
DEFAULT_COLORS = (
    "#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6",
    "#a96b59", "#e76300", "#b9ac70", "#717581", "#92dadd",
)  # fmt: skip


class PlotStyle(NamedTuple):
    """How figures look, built from the ``plots`` config section by :func:`style_from_settings`."""

    style: str
    experiment: str
    label: str
    lumi_text: str
    formats: tuple[str, ...]
    dpi: int
    colors: dict[str, str]
    labels: Labels


def style_from_settings(settings: Mapping[str, Any]) -> PlotStyle:
    """Build the style from the ``plots`` config section (a mapping or its JSON string).

    Args:
        settings: the ``plots`` section; keys ``style``, ``experiment``, ``label``, ``lumi_text``,
            ``formats``, ``dpi`` and optionally ``colors`` (process -> matplotlib colour) and
            ``labels`` (see :mod:`analysis.plots.labels`).

    Returns:
        The style every plotting function takes.
    """
    if isinstance(settings, str):
        settings = json.loads(settings)
    if settings.get("style", "CMS") not in STYLES:
        raise AnalysisError(f"plots.style: {settings['style']!r} is not one of {list(STYLES)}")
    formats = tuple(settings.get("formats", ("pdf", "png")))
    if not formats:
        raise AnalysisError(
            "plots.formats: give at least one format (png is needed for the report)"
        )
    return PlotStyle(
        style=settings.get("style", "CMS"),
        experiment=settings.get("experiment", "CMS"),
        label=settings.get("label", "Private work"),
        lumi_text=settings.get("lumi_text", ""),
        formats=formats,
        dpi=int(settings.get("dpi", 150)),
        colors=dict(settings.get("colors") or {}),
        labels=labels_from_settings(settings.get("labels")),
    )


def apply_style(style: PlotStyle) -> None:
    """Activate the mplhep style (fonts, ticks, sizes) for the following figures."""
    plt.style.use(getattr(mplhep.style, style.style))
    # PDF text stays text (type 42), so journals and reviewers can search and edit labels
    plt.rcParams["pdf.fonttype"] = 42


def new_figure(style: PlotStyle, ratio: bool = False, figsize: tuple[float, float] | None = None):
    """A figure with one axes, or a main and a ratio panel sharing x when ``ratio``.

    Returns:
        ``(figure, axes)`` or ``(figure, (main, ratio))``.
    """
    apply_style(style)
    if not ratio:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    fig, (main, lower) = plt.subplots(
        2, 1, sharex=True, figsize=figsize, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.07}
    )
    return fig, (main, lower)


#: Pickled blank labelled figures drawn in this process, by style and layout.
_LABELLED: dict[str, bytes] = {}


def labelled_figure(
    style: PlotStyle,
    ratio: bool = False,
    figsize: tuple[float, float] | None = None,
    data: bool = True,
    lumi: bool = True,
    ylabels: Sequence[str] = (),
):
    """:func:`new_figure` with the experiment label (:func:`add_label`) already drawn, and the
    titles of the y axes (``ylabels``: main, ratio panel) set before it, as on a new figure.

    The label alone costs about 0.2 s of CPU (mplhep measures its texts by drawing), and its
    place depends only on the figure's layout, not on what the axes show: the blank labelled
    figure of each layout is drawn once per process and every figure starts from a copy of it
    (the saved files are the same byte for byte as when the label is drawn on each figure).

    Returns:
        ``(figure, axes)`` or ``(figure, (main, ratio))``, as :func:`new_figure`.
    """
    key = repr((style, ratio, figsize, data, lumi, tuple(ylabels)))
    if key not in _LABELLED:
        fig, axes = new_figure(style, ratio=ratio, figsize=figsize)
        for ax, title in zip(fig.axes, ylabels, strict=False):
            ax.set_ylabel(title)
        add_label(fig.axes[0], style, data=data, lumi=lumi)
        _LABELLED[key] = pickle.dumps(fig)  # restored to pyplot when loaded, like a new figure
        Gcf.destroy_fig(fig)  # what plt.close does; the blank itself is never saved
    apply_style(style)  # the rcParams that saving reads (PDF font type), as new_figure sets
    with _transform_parents_keyed_by_id():
        fig = pickle.loads(_LABELLED[key])
    return (fig, tuple(fig.axes)) if ratio else (fig, fig.axes[0])


@contextlib.contextmanager
def _transform_parents_keyed_by_id() -> Iterator[None]:
    """While inside, an unpickled matplotlib transform files its parents under their ids.

    A transform tells its parents that it changed through a dict keyed by ``id(parent)``, and
    matplotlib's unpickling keeps the ids the parents had in the pickling process. A transform
    made later whose id happens to equal one of those keys replaces that parent, which then
    misses the change: a tick label's offset kept the resolution of the bounding-box
    measurement (150 dpi) when the PDF was drawn (72), moving the tick labels 3.8 pt in about
    one figure of a few hundred, depending on memory addresses.
    """
    restore = TransformNode.__setstate__

    def setstate(node: TransformNode, state: dict[str, Any]) -> None:
        restore(node, state)
        parents = [ref() for ref in node._parents.values()]
        node._parents = {}
        for parent in parents:
            if parent is not None:  # the callback forgets a parent once it is gone
                key = id(parent)
                node._parents[key] = weakref.ref(
                    parent, lambda _, pop=node._parents.pop, key=key: pop(key, None)
                )

    TransformNode.__setstate__ = setstate  # type: ignore[method-assign]
    try:
        yield
    finally:
        TransformNode.__setstate__ = restore  # type: ignore[method-assign]


def add_label(
    ax: Any, style: PlotStyle, data: bool = True, lumi: bool = True, above: Any = None
) -> list[Any]:
    """Experiment label (e.g. "CMS Private work") and the luminosity text above the axes, drawn
    by mplhep's label function of the style, smaller when both do not fit side by side.

    Args:
        ax: the top axes of the figure.
        style: the plot style.
        data: False adds "Simulation" (figures without collision data).
        lumi: False omits the luminosity text (figures not normalised to a luminosity).
        above: an artist above the axes (e.g. the top axis of a twin axes) that the label is
            moved above.

    Returns:
        The text artists of the label.
    """
    texts = _experiment_label(ax, style, data, lumi, None)
    scale = _header_scale(ax, texts)
    if scale < 1.0:
        sizes = [text.get_fontsize() * scale for text in texts]
        for text in texts:
            text.remove()
        texts = _experiment_label(ax, style, data, lumi, sizes)
    if above is not None:
        _move_above(ax, texts, above)
    return texts


def _experiment_label(
    ax: Any, style: PlotStyle, data: bool, lumi: bool, sizes: Sequence[float] | None
) -> list[Any]:
    """The label texts from mplhep, above the axes (``loc=0``) in every style."""
    rlabel = style.lumi_text if lumi and style.lumi_text else None
    options: dict[str, Any] = {} if sizes is None else {"fontsize": (*sizes, sizes[-1])[:4]}
    texts = EXPERIMENT_LABELS[style.style](
        ax=ax, exp=style.experiment, text=style.label, data=data, rlabel=rlabel, com=None, loc=0,
        **options,
    )  # fmt: skip
    return [text for text in texts if text is not None]


def _header_scale(ax: Any, texts: Sequence[Any]) -> float:
    """The factor the label's font sizes shrink by so that the experiment label and the
    luminosity text (the last text) keep a gap of :data:`HEADER_GAP` font heights; 1 if they
    do."""
    if len(texts) < 3:
        return 1.0
    renderer = ax.figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in texts]
    gap = HEADER_GAP * texts[-1].get_fontsize() * ax.figure.dpi / 72
    left = max(box.x1 for box in boxes[:-1]) - min(box.x0 for box in boxes[:-1])
    available = boxes[-1].x1 - min(box.x0 for box in boxes[:-1])
    needed = left + boxes[-1].width + gap
    return 1.0 if needed <= available else 0.97 * available / needed


def _move_above(ax: Any, texts: Sequence[Any], above: Any) -> None:
    """Shift the label texts up (in axes coordinates) until they clear ``above``."""
    renderer = ax.figure.canvas.get_renderer()
    top = above.get_tightbbox(renderer).y1
    bottom = min(text.get_window_extent(renderer).y0 for text in texts)
    shift = (top - bottom + 0.2 * texts[0].get_fontsize() * ax.figure.dpi / 72) / ax.bbox.height
    if shift > 0:
        for text in texts:
            x, y = text.get_position()
            text.set_position((x, y + shift))


def process_colors(processes: Sequence[str], style: PlotStyle) -> dict[str, str]:
    """A colour per process: the configured one, else the next of :data:`DEFAULT_COLORS`."""
    colors: dict[str, str] = {}
    free = iter(c for c in DEFAULT_COLORS if c not in style.colors.values())
    for process in processes:
        colors[process] = style.colors.get(process) or next(free, "#777777")
    return colors


def output_paths(prefix: str | os.PathLike[str], style: PlotStyle) -> list[Path]:
    """The files a figure is saved as: ``prefix`` with each configured format's extension."""
    return [Path(f"{prefix}.{fmt}") for fmt in style.formats]


def save_figure(fig: Any, prefix: str | os.PathLike[str], style: PlotStyle) -> list[Path]:
    """Save a figure in every configured format, atomically, and close it.

    Metadata that embeds the creation time or software version is stripped, so the same inputs
    give byte-identical PNG and PDF files.

    Args:
        fig: the matplotlib figure.
        prefix: output path without extension.
        style: the plot style (formats, dpi).

    Returns:
        The written paths.
    """
    paths = output_paths(prefix, style)
    bbox = tight_bbox(fig, style.dpi)
    for path in paths:
        fmt = path.suffix[1:]
        metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {}
        if fmt == "pdf":
            metadata = {"CreationDate": None, "Producer": None, "Creator": None}
        elif fmt == "svg":
            metadata = {"Date": None, "Creator": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=style.dpi, metadata=metadata, bbox_inches=bbox)
    plt.close(fig)
    return paths


def draw_figures(figures: Sequence[Callable[[], list[Path]]], workers: int = 1) -> list[Path]:
    """Call each figure's drawing function (picklable: a module-level function or a
    ``functools.partial`` of one) and return the paths written, in order; with ``workers`` > 1
    in that many processes. A figure costs about half a second of CPU, so a job of hundreds uses
    every core it has; the files do not depend on ``workers``."""
    if workers <= 1 or len(figures) <= 1:
        return [path for figure in figures for path in figure()]
    context = multiprocessing.get_context("spawn")  # no forked matplotlib state
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [path for paths in pool.map(_draw, figures) for path in paths]


def _draw(figure: Callable[[], list[Path]]) -> list[Path]:
    """Draw one figure in a worker process (:func:`draw_figures`)."""
    return figure()


def tight_bbox(fig: Any, dpi: float) -> Bbox:
    """The figure's tight bounding box in inches with savefig's padding, measured once at the
    saving resolution: ``savefig(bbox_inches="tight")`` draws the figure once more per format
    to measure it (bench/plots.py compares the two). The PNG is the same pixel for pixel; the
    PDF page may differ by a tenth of a point."""
    shown_dpi = fig.dpi
    fig.set_dpi(dpi)
    try:
        fig.draw_without_rendering()
        bbox = fig.get_tightbbox(fig.canvas.get_renderer())
    finally:
        fig.set_dpi(shown_dpi)
    return bbox.padded(plt.rcParams["savefig.pad_inches"])


def ratio_with_errors(
    numerator: np.ndarray, denominator: np.ndarray, error: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """numerator / denominator and error / denominator, NaN where the denominator is not positive.

    Empty prediction bins are left out of a ratio panel instead of drawn as infinities.
    """
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    valid = denominator > 0
    safe = np.where(valid, denominator, 1.0)
    ratio = np.where(valid, numerator / safe, np.nan)
    return ratio, np.where(valid, np.asarray(error, float) / safe, np.nan)


def draw_band(ax: Any, edges: np.ndarray, low: np.ndarray, high: np.ndarray, label: str | None):
    """A hatched uncertainty band between ``low`` and ``high`` drawn as steps over ``edges``."""
    ax.fill_between(
        edges, np.append(low, low[-1]), np.append(high, high[-1]), step="post",
        facecolor="none", edgecolor="#555555", hatch="////", linewidth=0, label=label,
    )  # fmt: skip


def safe_name(text: str) -> str:
    """A file-name friendly version of ``text`` (channel, process or parameter names)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def math_name(name: str) -> str:
    """A parameter name for mathtext: ``mu`` and ``mu_X`` become a Greek mu (with subscript),
    other names keep their letters with underscores escaped."""
    if name == "mu":
        return r"\mu"
    if name.startswith("mu_"):
        return r"\mu_{\mathrm{" + name[3:].replace("_", r"\_") + "}}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"
