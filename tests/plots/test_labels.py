"""The label table (plots.labels): shipped defaults cover every built-in name, bad texts are
refused with the config key, and figures show the labels instead of the raw names."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from analysis.core.config import class_names, load_yaml
from analysis.core.errors import AnalysisError
from analysis.plots import distributions as plot_distributions
from analysis.plots.labels import labels_from_settings
from analysis.plots.style import style_from_settings
from analysis.selection.skim import FEATURES, INT_COLUMNS
from tests.conftest import REPO
from tests.plots.inputs import QCD, SETTINGS, write_feature_inputs

CONFIG = load_yaml(REPO / "config" / "config.yaml")


def test_shipped_labels_cover_every_builtin_name():
    """A skim column, process or class added without a label fails here (its figures would
    show the raw name)."""
    labels = labels_from_settings(CONFIG["plots"]["labels"])  # also: every text typesets
    samples = load_yaml(REPO / CONFIG["samples"])["samples"]
    processes = {sample.get("process", "data") for sample in samples.values()}
    assert set(FEATURES) | set(INT_COLUMNS) <= set(labels.features)
    assert set(CONFIG["train"]["features"]) <= set(labels.features)
    assert processes | {"data"} <= set(labels.processes)
    assert set(class_names(CONFIG["train"]["classes"])) <= set(labels.classes)


def test_unknown_names_are_shown_as_they_are():
    labels = style_from_settings({}).labels
    assert (labels.feature("x_1"), labels.process("Y"), labels.nn_axis("z")) == (
        "x_1", "Y", "NN output: z"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [(r"$\frac{1$", "not valid mathtext"), ("$p_T (GeV)", "unpaired '\\$'")],
)
def test_bad_label_names_its_key(text, message):
    """A label matplotlib cannot typeset stops with the key, before any figure is drawn."""
    with pytest.raises(AnalysisError, match=rf"plots\.labels\.features\.m_vis: .*{message}"):
        style_from_settings({"labels": {"features": {"m_vis": text}}})
    assert labels_from_settings({"features": {"cost": r"5 \$ per event"}}).feature("cost")


def test_feature_figure_uses_labels(tmp_path, monkeypatch):
    """Axis title and legend entries of a feature figure come from the table (a figure that
    writes "m_vis", "ZTT" or "data" fails)."""
    events = plot_distributions.load_events(*write_feature_inputs(tmp_path), ["m_vis", "is_os"])
    texts: list[str] = []
    close = plt.close

    def record(fig=None):
        ax = fig.axes[0]
        texts.extend([*(t.get_text() for t in ax.get_legend().get_texts()),
                      fig.axes[1].get_xlabel()])  # fmt: skip
        close(fig)

    monkeypatch.setattr(plt, "close", record)
    style = style_from_settings({**SETTINGS, "formats": ["png"]})
    plot_distributions.plot_features(
        events, ["m_vis"], {"os": {"is_os": 1}}, 5, tmp_path, style, qcd=QCD
    )
    table = CONFIG["plots"]["labels"]
    expected = {table["processes"][p] for p in ("ZTT", "TT", "QCD", "data")}
    assert expected | {table["features"]["m_vis"]} <= set(texts)
    assert not {"m_vis", "ZTT", "TT", "QCD", "data"} & set(texts)
