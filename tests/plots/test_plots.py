"""Plotting functions on small synthetic stage outputs: numbers, files, stored reference images
(rewritten on purpose only, by ``python -m tests.plots.reference_images``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

from analysis.core.errors import AnalysisError
from analysis.plots import fit as plot_fit
from analysis.plots import scans as plot_scans
from analysis.plots import stacks as plot_stacks
from analysis.plots import training as plot_training
from analysis.plots.style import style_from_settings
from analysis.stats import model as model_utils
from analysis.stats import prediction as stats_prediction
from analysis.stats.results import PullsResults
from tests.plots import reference_images
from tests.plots.inputs import (
    SETTINGS,
    STYLE,
    diagnostics_file,
    png_ok,
    write_histograms,
)


def test_postfit_band_uses_full_covariance(fit_inputs):
    """The Jacobian band equals the spread of the expected totals under parameters sampled from
    the fit's covariance (an independent Monte Carlo propagation), and differs from the diagonal."""
    directory, model, fit = fit_inputs
    values, covariance = stats_prediction.fitted_parameters(model, fit)
    prediction = stats_prediction.predict(model, values, covariance)
    nbins = model.config.nmaindata
    weights = np.zeros((nbins, len(prediction.samples), nbins))
    for k in range(nbins):
        weights[k, :, k] = 1.0
    band = prediction.uncertainty(weights)

    rng = np.random.default_rng(7)
    draws = rng.multivariate_normal(values, covariance, size=5000)
    totals = np.array([model.main_model.expected_data(p) for p in draws])
    np.testing.assert_allclose(band, totals.std(axis=0), rtol=0.05)
    diagonal = stats_prediction.Prediction(
        prediction.samples, prediction.yields, prediction.jacobian, np.diag(np.diag(covariance))
    ).uncertainty(weights)
    assert np.max(np.abs(diagonal / band - 1)) > 0.1, "correlations should matter in this model"


def test_prefit_band_is_prior_width(fit_inputs):
    """Pre-fit, the signal (POI free, so no width) varies only through sig_norm: +-10% at +-1
    sigma. The band is the derivative at 0 of pyhf's code4 interpolation, which matches the
    +-1 sigma half-difference to better than 0.5%."""
    _, model, _ = fit_inputs
    prediction = stats_prediction.predict(model, *stats_prediction.prefit_parameters(model))
    nbins = model.config.nmaindata
    signal = prediction.samples.index("signal")
    weights = np.zeros((nbins, len(prediction.samples), nbins))
    for k in range(nbins):
        weights[k, signal, k] = 1.0
    np.testing.assert_allclose(
        prediction.uncertainty(weights), 0.1 * prediction.yields[signal], rtol=0.005
    )


def test_yields_tables(fit_inputs):
    directory, model, fit = fit_inputs
    markdown, latex = plot_stacks.yields_tables(
        directory / "workspace.json", directory / "fit.json"
    )
    # the pre-fit total of channel "low" is the plain sum of the workspace's nominal yields
    assert "| total | 207.00 ±" in markdown
    assert "| data | 219 | 219 |" in markdown
    by_sample = model.main_model.expected_data(
        stats_prediction.fitted_parameters(model, fit)[0], return_by_sample=True
    )
    low = model.config.channel_slices["low"]
    post_signal_low = by_sample[model.config.samples.index("signal")][low].sum()
    assert f"{post_signal_low:.2f}" in markdown
    assert r"\begin{tabular}" in latex and r"\pm" in latex


def test_fit_figures(fit_inputs, tmp_path):
    directory, _, _ = fit_inputs
    workspace, fit = str(directory / "workspace.json"), str(directory / "fit.json")
    written = plot_stacks.plot_prepostfit(
        workspace, fit, tmp_path, STYLE, binning={"low": [0, 1, 2, 4]},
        axes={"low": {"title": "m (GeV)"}},
    )  # fmt: skip
    assert sorted(p.name for p in written) == sorted(
        f"{c}_{s}.{f}"
        for c in ("low", "high")
        for s in ("prefit", "postfit")
        for f in ("png", "pdf")
    )
    entries = [
        pull
        for pull in PullsResults.read(directory / "pulls.json").constrained
        if not model_utils.matches_any(pull.parameter, ["staterror_*"])
    ]
    assert sorted(pull.parameter for pull in entries) == ["bkg_norm", "shape", "sig_norm"]
    # normsys: prior centre 0 and width 1, so pull = fitted value and constraint = its error
    bestfit = json.loads((directory / "fit.json").read_text())["bestfit"]["bkg_norm"]
    pulls = {pull.parameter: (pull.pull, pull.constraint) for pull in entries}
    assert pulls["bkg_norm"] == pytest.approx(bestfit)
    with pytest.raises(AnalysisError, match="rerun the pulls stage"):
        PullsResults.read(directory / "fit.json")
    written += plot_fit.plot_pulls(entries, tmp_path / "pulls", STYLE)
    written += plot_fit.plot_impacts(
        str(directory / "ranking.json"), fit, 2, tmp_path / "impacts", STYLE
    )
    written += plot_fit.plot_correlation(fit, 0.1, tmp_path / "correlation", STYLE)
    written += plot_scans.plot_scan(str(directory / "scan_mu.json"), tmp_path / "scan", STYLE)
    written += plot_scans.plot_contour(str(directory / "scan2d.json"), tmp_path / "contour", STYLE)
    written += plot_scans.plot_limits(str(directory / "limits.json"), tmp_path / "limits", STYLE)
    for path in written:
        assert path.stat().st_size > 1000
        if path.suffix == ".png":
            png_ok(path)


def test_axis_titles_name_the_observable():
    """NN categories read "NN output: <class label>", control regions their observable's label,
    a configured title wins, a channel by bin index says so (a regression to raw names, e.g.
    "ztt: fitted observable" or "mt_1", fails)."""
    axes = plot_stacks.channel_axes(
        {"ztt": {"nn": "ztt"}, "wjets": {"observable": "mt_1"}, "ggH": {"nn": "ggH"}},
        {"ggH": "my title"},
    )
    title = [plot_stacks.axis_title(name, axes, STYLE) for name in ("ztt", "wjets", "ggH", "x")]
    assert title == [
        r"NN output: Z$\to\tau\tau$",
        r"$m_{T}(\mu, p_{T}^{\mathrm{miss}})$ (GeV)",
        "my title",
        "x: fitted observable",
    ]
    assert plot_stacks.axis_title("ztt", axes, STYLE, binned=False) == "Bin index"
    assert plot_stacks.axis_title("ggH", axes, STYLE, binned=False) == "my title"


def test_fit_record_from_another_workspace_is_refused(fit_inputs, tmp_path):
    directory, model, fit = fit_inputs
    keep = [i for i, label in enumerate(fit.labels) if label != "shape"]
    broken = dataclasses.replace(
        fit, labels=tuple(fit.labels[i] for i in keep), values=fit.values[keep],
        uncertainties=fit.uncertainties[keep], correlation=fit.correlation[np.ix_(keep, keep)],
    )  # fmt: skip
    with pytest.raises(AnalysisError, match="'shape'"):
        stats_prediction.fitted_parameters(model, broken, "fit.json")


def test_templates(tmp_path):
    write_histograms(tmp_path / "histograms.root")
    written = plot_stacks.plot_templates(
        str(tmp_path / "histograms.root"), tmp_path / "out", STYLE, workers=2
    )
    names = sorted({p.stem for p in written})
    # data has only a nominal; tune_ZTT is one-sided and still gets its figure
    assert names == [f"{c}__ZTT__{s}" for c in ("ch1", "ch2") for s in ("tau_es", "tune_ZTT")]
    for path in written:
        if path.suffix == ".png":
            png_ok(path)


def test_training_figures(tmp_path):
    diagnostics_file(tmp_path)
    diagnostics = str(tmp_path / "diagnostics.json")
    written = plot_training.plot_history(str(tmp_path / "history.json"), tmp_path / "h", STYLE)
    for kind in ("efficiency", "purity"):
        written += plot_training.plot_confusion(diagnostics, kind, tmp_path / kind, STYLE)
    written += plot_training.plot_roc(diagnostics, tmp_path / "roc", STYLE)
    written += plot_training.plot_scores(diagnostics, "sig", tmp_path / "scores", STYLE)
    taylor = str(tmp_path / "taylor.json")
    written += plot_training.plot_taylor_matrix(taylor, tmp_path / "tm", STYLE)
    written += plot_training.plot_taylor_ranking(taylor, "bkg", 2, tmp_path / "tr", STYLE)
    assert len(written) == 2 * 7
    for path in written:
        if path.suffix == ".png":
            png_ok(path)
    with pytest.raises(AnalysisError, match="no scores for class 'nope'"):
        plot_training.plot_scores(diagnostics, "nope", tmp_path / "x", STYLE)


def test_same_inputs_same_bytes(tmp_path):
    diagnostics_file(tmp_path)
    first = plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "a", STYLE)
    second = plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "b", STYLE)
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.suffix


def test_roc_shows_the_diagnostics(tmp_path, monkeypatch):
    """The value-level partner of the ROC reference image: each class's curve is its (tpr, fpr)
    of diagnostics.json (points at fpr 0 left out of the log axis) and its legend entry names its
    AUC; fails on axes swapped, a class drawn with another's curve, or the AUC of another class."""
    from tests.plots import artists

    diagnostics_file(tmp_path)
    diagnostics = json.loads((tmp_path / "diagnostics.json").read_text())
    roc = {name: diagnostics["roc"][name] for name in diagnostics["classes"]}  # drawing order
    with artists.captured_figures(monkeypatch) as figures:
        plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "roc", STYLE)
        ax = figures[0].axes[0]
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert len(ax.lines) == len(roc) == len(legend)
        for line, text, (name, curve) in zip(ax.lines, legend, roc.items(), strict=True):
            fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve["tpr"])
            np.testing.assert_array_equal(line.get_xdata(), tpr[fpr > 0])
            np.testing.assert_array_equal(line.get_ydata(), fpr[fpr > 0])
            assert text.endswith(f"(AUC {curve['auc']:.3f})"), (name, text)


@pytest.mark.parametrize("name", reference_images.NAMES)
def test_reference_images(name, fit_inputs, tmp_path):
    """Key figures against stored references (fixed inputs): a silent change of style or content
    fails. Rewrite them with ``python -m tests.plots.reference_images`` after an intended change."""
    directory, _, _ = fit_inputs
    diagnostics_file(directory)
    actual = reference_images.draw(name, directory, tmp_path)
    reference = reference_images.REFERENCES / f"{name}.png"
    result = compare_images(str(reference), str(actual), tol=5)
    assert result is None, result


def test_style_errors():
    with pytest.raises(AnalysisError, match="plots.style"):
        style_from_settings({"style": "NOPE"})
    assert style_from_settings(json.dumps(SETTINGS)).formats == ("png", "pdf")
