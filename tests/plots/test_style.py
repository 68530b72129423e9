"""The shared style: its errors, and that no figure draws two texts on top of each other (the
experiment label against the luminosity text above all, for every plotting function on small
inputs with the shipped plots section)."""

from __future__ import annotations

import dataclasses
import gc
import json
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text
from matplotlib.transforms import TransformNode

from analysis.core.config import load_yaml
from analysis.core.errors import AnalysisError
from analysis.core.io import write_json
from analysis.plots import distributions as plot_distributions
from analysis.plots import fit as plot_fit
from analysis.plots import scans as plot_scans
from analysis.plots import stacks as plot_stacks
from analysis.plots import training as plot_training
from analysis.plots.style import (
    add_label,
    labelled_figure,
    new_figure,
    save_figure,
    style_from_settings,
)
from analysis.selection.skim import CUTS
from analysis.stats.results import FitResults, PullsResults, RankingResults
from tests.conftest import REPO
from tests.plots.inputs import (
    QCD,
    SETTINGS,
    diagnostics_file,
    write_cutflows,
    write_feature_inputs,
    write_histograms,
)

#: The shipped plots section (its long luminosity text included), one format so that the n-th
#: closed figure is the n-th written file.
LAYOUT = style_from_settings({**SETTINGS, "lumi_text": "10 fb$^{-1}$ (13 TeV, toy)",
                              "formats": ["png"], "dpi": 72})  # fmt: skip
CONFIG = load_yaml(REPO / "config" / "config.yaml")
#: The shipped samples' names (the cutflow's legend).
SAMPLES = list(load_yaml(REPO / CONFIG["samples"])["samples"])
#: Overlaps smaller than this (pixels, both directions) are rounding, not a collision.
TOLERANCE = 1.0


def test_style_errors():
    with pytest.raises(AnalysisError, match="plots.style"):
        style_from_settings({"style": "NOPE"})
    assert style_from_settings(json.dumps(SETTINGS)).formats == ("png", "pdf")


def drawn_texts(fig, monkeypatch) -> list[Text]:
    """The non-empty texts a draw of ``fig`` actually renders (ticks outside the view, hidden
    tick labels of shared axes and empty texts are not drawn, so they are not listed)."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(Text, "draw", draw)
        fig.canvas.draw()
    return drawn


def overlaps(fig, monkeypatch) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose bounding boxes overlap by more than :data:`TOLERANCE`."""
    renderer = fig.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer))
             for text in drawn_texts(fig, monkeypatch)]  # fmt: skip
    found = []
    for (first, a), (second, b) in combinations(boxes, 2):
        width = min(a.x1, b.x1) - max(a.x0, b.x0)
        height = min(a.y1, b.y1) - max(a.y0, b.y0)
        if width > TOLERANCE and height > TOLERANCE:
            found.append((first, second))
    return found


def draw_cutflow(tmp: Path) -> list[Path]:
    """The small cutflow, and one with the preselection's cut names and the shipped samples
    (long names slanted or a crowded legend overlap)."""
    small = plot_distributions.read_cutflows(write_cutflows(tmp))
    shipped = {
        sample: [{"name": cut, "events": 100 - k, "weighted": 0.9**k} for k, cut in enumerate(CUTS)]
        for sample in SAMPLES
    }
    return [
        *plot_distributions.plot_cutflow(small, tmp / "cutflow", LAYOUT),
        *plot_distributions.plot_cutflow(shipped, tmp / "cutflow_shipped", LAYOUT),
    ]


def draw_features(tmp: Path) -> list[Path]:
    events = plot_distributions.load_events(*write_feature_inputs(tmp), ["m_vis", "njets", "is_os"])
    return plot_distributions.plot_features(
        events, ["m_vis", "njets"], SETTINGS["regions"], 10, tmp / "features", LAYOUT,
        {"signals": ["TT"], "threshold": 1.0}, QCD,
    )  # fmt: skip


def draw_training(tmp: Path) -> list[Path]:
    diagnostics_file(tmp)
    diagnostics, taylor = str(tmp / "diagnostics.json"), str(tmp / "taylor.json")
    return [
        *plot_training.plot_history(str(tmp / "history.json"), tmp / "history", LAYOUT),
        *plot_training.plot_confusion(diagnostics, "efficiency", tmp / "confusion", LAYOUT),
        *plot_training.plot_roc(diagnostics, tmp / "roc", LAYOUT),
        *plot_training.plot_scores(diagnostics, "sig", tmp / "scores", LAYOUT),
        *plot_training.plot_taylor_matrix(taylor, tmp / "taylor_matrix", LAYOUT),
        *plot_training.plot_taylor_ranking(taylor, "bkg", 3, tmp / "taylor_ranking", LAYOUT),
        *plot_training.plot_taylor_matrix(
            shipped_taylor(tmp), tmp / "taylor_matrix_shipped", LAYOUT
        ),
    ]


def shipped_taylor(tmp: Path) -> str:
    """A Taylor file with the shipped features (upright titles with units side by side)."""
    features = CONFIG["train"]["features"]
    path = tmp / "taylor_shipped.json"
    rows = {name: [1.0 / (k + 1) for k in range(len(features))] for name in ("ggH", "ztt")}
    write_json(path, {"features": features, "first_order": rows})
    return str(path)


def draw_templates(tmp: Path) -> list[Path]:
    write_histograms(tmp / "histograms.root")
    axes = {"ch1": {"nn": "ztt"}, "ch2": {"observable": "mt_1"}}
    return plot_stacks.plot_templates(str(tmp / "histograms.root"), tmp, LAYOUT, 1, axes)


def fit_figure_drawers(directory: Path) -> dict[str, Callable[[Path], list[Path]]]:
    """The fit figures of the fitted tiny workspace in ``directory``."""
    fit = str(directory / "fit.json")

    def stacks(tmp: Path) -> list[Path]:
        # the Asimov fit of a blinded analysis draws no data: "CMS Simulation Private work"
        asimov = tmp / "asimov.json"
        dataclasses.replace(FitResults.read(fit), asimov=True).write(asimov)
        return [
            path
            for record, name in ((fit, "observed"), (asimov, "asimov"))
            for path in plot_stacks.plot_prepostfit(
                str(directory / "workspace.json"),
                str(record),
                tmp / name,
                LAYOUT,
                {"low": [0, 1, 2, 4], "high": [0.0, 0.5, 1.0]},
                {"low": {"nn": "ggH"}},
            )  # fmt: skip
        ]

    def summary(tmp: Path) -> list[Path]:
        pulls = PullsResults.read(directory / "pulls.json").constrained
        # impacts of a few units put a tick label at the right end, under the axis title
        ranking = RankingResults.read(directory / "ranking.json")
        wide = [e._replace(impact_prefit_up=11 * e.impact_prefit_up) for e in ranking.impacts]
        RankingResults(tuple(wide)).write(tmp / "wide.json")
        return [
            *plot_fit.plot_pulls(pulls, tmp / "pulls", LAYOUT),
            *plot_fit.plot_impacts(str(tmp / "wide.json"), fit, 3, tmp / "impacts_wide", LAYOUT),
            *plot_fit.plot_impacts(
                str(directory / "ranking.json"), fit, 3, tmp / "impacts", LAYOUT
            ),  # fmt: skip
            *plot_fit.plot_correlation(fit, 0.0, tmp / "correlation", LAYOUT),
        ]

    def scans(tmp: Path) -> list[Path]:
        return [
            *plot_scans.plot_scan(str(directory / "scan_mu.json"), tmp / "scan", LAYOUT),
            *plot_scans.plot_contour(str(directory / "scan2d.json"), tmp / "contour", LAYOUT),
            *plot_scans.plot_limits(str(directory / "limits.json"), tmp / "limits", LAYOUT),
        ]

    return {"stacks": stacks, "summary": summary, "scans": scans}


DRAWERS = {
    "cutflow": draw_cutflow,
    "features": draw_features,
    "training": draw_training,
    "templates": draw_templates,
}


@pytest.mark.parametrize("family", [*DRAWERS, "stacks", "summary", "scans"])
def test_no_texts_overlap(family, fit_inputs, tmp_path, monkeypatch):
    """No two texts of any figure overlap. Fails on a header whose experiment label runs into
    the luminosity text ("CMS Simulation Private work" into "10 fb^-1 (13 TeV, toy)" on the fit
    stacks), on an experiment label drawn over the impacts' top axis, and on legends, tick
    labels or annotations drawn over each other."""
    found: list[list[tuple[str, str]]] = []
    close = plt.close

    def check_then_close(fig=None):
        found.append(overlaps(fig, monkeypatch))
        close(fig)

    monkeypatch.setattr(plt, "close", check_then_close)
    drawers = {**DRAWERS, **fit_figure_drawers(fit_inputs[0])}
    written = drawers[family](tmp_path)
    assert len(written) == len(found) > 0
    names = [str(path.relative_to(tmp_path)) for path in written]
    collisions = {name: pairs for name, pairs in zip(names, found, strict=True) if pairs}
    assert not collisions, collisions


def test_labelled_figure_saves_the_files_of_a_figure_labelled_in_place(tmp_path):
    """The blank labelled figure copied from its cache gives the files of a new figure with its
    y titles set and the label drawn on it, byte for byte (the second copy included)."""
    style = style_from_settings({**SETTINGS, "formats": ["png", "pdf"]})
    titles = ("Events / bin", "Ratio")

    def content(ax, rax):
        ax.stairs([3.0, 50.0, 700.0], [0.0, 1.0, 2.0, 3.0], label="toy")
        rax.stairs([0.9, 1.0, 1.2], [0.0, 1.0, 2.0, 3.0])
        ax.legend(title="region")

    fig, (ax, rax) = new_figure(style, ratio=True)
    ax.set_ylabel(titles[0])
    rax.set_ylabel(titles[1])
    add_label(ax, style, data=False)
    content(ax, rax)
    expected = save_figure(fig, tmp_path / "in_place", style)
    for copy in ("first", "second"):
        fig, (ax, rax) = labelled_figure(style, ratio=True, data=False, ylabels=titles)
        content(ax, rax)
        for path, reference in zip(save_figure(fig, tmp_path / copy, style), expected, strict=True):
            assert path.read_bytes() == reference.read_bytes(), path.name


def _live_transforms() -> dict[int, TransformNode]:
    gc.collect()
    return {id(node): node for node in gc.get_objects() if isinstance(node, TransformNode)}


def test_labelled_figure_transforms_reach_their_parents():
    """Every transform made by copying the cached blank figure files its parents under their own
    ids (unpickled, matplotlib keeps the ids of the pickling process; a later transform with
    such an id would take a parent's place and leave it stale when the resolution changes)."""
    style = style_from_settings(SETTINGS)
    for _ in range(2):  # the first call also draws and caches the blank
        before = _live_transforms()
        fig, _axes = labelled_figure(style, ratio=True, ylabels=("Events", "Ratio"))
        made = [node for key, node in _live_transforms().items() if key not in before]
        misfiled = [
            (node, key)
            for node in made
            for key, ref in node._parents.items()
            if ref() is not None and id(ref()) != key
        ]
        assert len(made) > 100 and not misfiled, misfiled[:3]
        plt.close(fig)
