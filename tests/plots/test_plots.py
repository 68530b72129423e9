"""Plotting functions on small synthetic stage outputs: numbers, files, stored reference images.

Set UPDATE_REFERENCE_PLOTS=1 to rewrite tests/data/reference_plots/ after an intended change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import hist
import numpy as np
import pyhf
import pytest
import uproot
from matplotlib.testing.compare import compare_images

from analysis.core.errors import AnalysisError
from analysis.core.io import write_json, write_tree
from analysis.plots import distributions as plot_distributions
from analysis.plots import fit as plot_fit
from analysis.plots import scans as plot_scans
from analysis.plots import stacks as plot_stacks
from analysis.plots import training as plot_training
from analysis.plots.style import style_from_settings
from analysis.stats import model as model_utils
from analysis.stats import prediction as stats_prediction
from analysis.stats import pulls as pulls_stage
from analysis.stats.results import (
    FitResults,
    GoodnessOfFit,
    Impact,
    Limit,
    LimitResults,
    PullsResults,
    RankingResults,
    Scan2DResults,
    ScanResults,
)
from tests.conftest import DATA

REFERENCES = DATA / "reference_plots"
SETTINGS = {
    "style": "CMS",
    "experiment": "CMS",
    "label": "Private work",
    "lumi_text": "1 fb$^{-1}$ (13 TeV)",
    "formats": ["png", "pdf"],
    "dpi": 60,
    "feature_bins": 10,
    "regions": {"os": {"is_os": 1}, "ss": {"is_os": 0}},
    "taylor_top": 5,
    "ranking_top": 3,
    "correlation_threshold": 0.1,
    "exclude_parameters": ["staterror_*"],
}
STYLE = style_from_settings(SETTINGS)
CLASSES = ["sig", "bkg"]


def png_ok(path: Path) -> None:
    """A real, non-blank PNG: readable and not a single colour."""
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert np.ptp(image[..., :3]) > 0.5, f"{path} looks blank"


def tiny_workspace() -> dict:
    """Two channels; signal with a free mu, background with normsys, histosys and staterror."""

    def channel(name, sig, bkg, data):
        return {
            "name": name,
            "samples": [
                {
                    "name": "signal",
                    "data": sig,
                    "modifiers": [
                        {"name": "mu", "type": "normfactor", "data": None},
                        {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                    ],
                },
                {
                    "name": "background",
                    "data": bkg,
                    "modifiers": [
                        {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.3, "lo": 0.7}},
                        {
                            "name": "shape",
                            "type": "histosys",
                            "data": {
                                "hi_data": [b * (1 + 0.1 * k) for k, b in enumerate(bkg)],
                                "lo_data": [b * (1 - 0.1 * k) for k, b in enumerate(bkg)],
                            },
                        },
                        {
                            "name": f"staterror_{name}",
                            "type": "staterror",
                            "data": [0.05 * b for b in bkg],
                        },
                    ],
                },
            ],
        }

    return {
        "channels": [
            channel("low", [2.0, 5.0, 10.0], [100.0, 60.0, 30.0], None),
            channel("high", [8.0, 12.0], [20.0, 10.0], None),
        ],
        "observations": [
            {"name": "low", "data": [110.0, 72.0, 37.0]},
            {"name": "high", "data": [31.0, 25.0]},
        ],
        "measurements": [
            {
                "name": "m",
                "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-5, 10]]}]},
            }
        ],
        "version": "1.0.0",
    }


@pytest.fixture(scope="module")
def fit_inputs(tmp_path_factory):
    """The tiny workspace, its fit with pyhf/minuit (fit.json contract) and fake later outputs."""
    directory = tmp_path_factory.mktemp("fit")
    spec = tiny_workspace()
    workspace_path = directory / "workspace.json"
    write_json(workspace_path, spec)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    workspace = pyhf.Workspace(spec)
    model = workspace.model(
        modifier_settings={"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
    )
    pars, corr, twice_nll = pyhf.infer.mle.fit(
        workspace.data(model), model, return_uncertainties=True, return_correlations=True,
        return_fitted_val=True,
    )  # fmt: skip
    setup = model_utils.setup_from_files(workspace_path, {})
    pars = np.asarray(pars)
    fit = FitResults(
        poi="mu", pois=("mu",), asimov=False, converged=True, twice_nll=float(twice_nll),
        labels=tuple(model.config.par_names), values=pars[:, 0], uncertainties=pars[:, 1],
        correlation=np.asarray(corr), fixed=(), goodness_of_fit=GoodnessOfFit(1.0, 1, 0.3),
        attempts=(), workspace_sha256=setup.digest, versions={},
    )  # fmt: skip
    fit.write(directory / "fit.json")
    # pulls.json as the pulls stage writes it
    pulls_stage.pulls(setup, fit).write(directory / "pulls.json")
    impacts = [
        Impact(
            name, "normsys", 0.1 * k, 1.0, 1.0, 0.1 * k, 0.9, 0.3 / (k + 1), -0.25 / (k + 1),
            0.2 / (k + 1), -0.18 / (k + 1), (), True,
        )
        for k, name in enumerate(["bkg_norm", "shape", "sig_norm"])
    ]  # fmt: skip
    RankingResults(tuple(impacts)).write(directory / "ranking.json")
    values = np.linspace(0.0, 3.0, 13)
    ScanResults(
        "mu", fit.bestfit("mu"), tuple(values), tuple(((values - 1.2) / 0.5) ** 2), True,
        (0.7, 1.7), (0.2, 2.2),
    ).write(directory / "scan_mu.json")  # fmt: skip
    x, y = np.linspace(0, 2, 11), np.linspace(0, 3, 13)
    grid_x, grid_y = np.meshgrid(x, y, indexing="ij")
    Scan2DResults(
        ("mu_a", "mu_b"), tuple(x), tuple(y),
        ((grid_x - 1) / 0.4) ** 2 + ((grid_y - 1.5) / 0.8) ** 2,
        {"mu_a": (1.0, 0.4), "mu_b": (1.5, 0.8)}, True,
    ).write(directory / "scan2d.json")  # fmt: skip
    limits = {"mu": Limit(2.1, 0.8, 1.1, 1.5, 2.1, 2.9)}
    LimitResults(False, 0.95, limits).write(directory / "limits.json")
    return directory, model, fit


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
        workspace, fit, tmp_path, STYLE, binning={"low": [0, 1, 2, 4]}, xlabels={"low": "m (GeV)"}
    )
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


def test_fit_record_from_another_workspace_is_refused(fit_inputs, tmp_path):
    directory, model, fit = fit_inputs
    keep = [i for i, label in enumerate(fit.labels) if label != "shape"]
    broken = dataclasses.replace(
        fit, labels=tuple(fit.labels[i] for i in keep), values=fit.values[keep],
        uncertainties=fit.uncertainties[keep], correlation=fit.correlation[np.ix_(keep, keep)],
    )  # fmt: skip
    with pytest.raises(AnalysisError, match="'shape'"):
        stats_prediction.fitted_parameters(model, broken, "fit.json")


def write_histograms(path: Path) -> None:
    """A histograms.root like the histograms stage's: TH1D with sumw2, channel/process/variation."""
    rng = np.random.default_rng(3)
    with uproot.recreate(path) as root:
        for channel in ("ch1", "ch2"):
            for process, variations in (
                ("ZTT", ["nominal", "tau_es_up", "tau_es_down", "tune_ZTT_up"]),
                ("data", ["nominal"]),
            ):
                for variation in variations:
                    h = hist.Hist(hist.axis.Regular(5, 0, 1), storage=hist.storage.Weight())
                    h.fill(rng.uniform(size=200), weight=rng.uniform(0.5, 1.5, size=200))
                    root[f"{channel}/{process}/{variation}"] = h


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


def diagnostics_file(path: Path) -> None:
    """Synthetic train/diagnostics.json and history/taylor files with the train stage's keys."""
    fpr = np.linspace(0, 1, 51)
    edges = np.linspace(0, 1, 11)
    write_json(
        path / "diagnostics.json",
        {
            "classes": CLASSES,
            "confusion": {
                "weighted": [[80.0, 20.0], [10.0, 90.0]],
                "efficiency": [[0.8, 0.2], [0.1, 0.9]],
                "purity": [[0.89, 0.18], [0.11, 0.82]],
            },
            "roc": {
                "sig": {"fpr": fpr.tolist(), "tpr": np.sqrt(fpr).tolist(), "auc": 2 / 3},
                "bkg": {"fpr": fpr.tolist(), "tpr": (fpr ** (1 / 3)).tolist(), "auc": 0.75},
            },
            "scores": {
                "bins": edges.tolist(),
                **{
                    node: {
                        true: {
                            "train": np.linspace(0.05, 0.15, 10).tolist(),
                            "test": np.linspace(0.06, 0.14, 10).tolist(),
                            "ks_statistic": 0.02,
                            "ks_pvalue": 0.5,
                        }
                        for true in CLASSES
                    }
                    for node in CLASSES
                },
            },
        },
    )
    write_json(
        path / "history.json",
        {
            "loss": [0.7, 0.5, 0.45, 0.44],
            "val_loss": [0.72, 0.55, 0.5, 0.52],
            "accuracy": [0.6, 0.7, 0.75, 0.76],
            "val_accuracy": [0.58, 0.68, 0.72, 0.71],
            "best_epoch": 2,
            "fold": 0,
        },
    )
    write_json(
        path / "taylor.json",
        {
            "features": ["a", "b", "c"],
            "first_order": {"sig": [0.3, 0.1, 0.05], "bkg": [0.02, 0.2, 0.1]},
            "ranking": {
                name: [
                    {"variables": ["a"], "order": 1, "value": 0.3},
                    {"variables": ["a", "b"], "order": 2, "value": 0.4},
                    {"variables": ["c"], "order": 1, "value": 0.05},
                ]
                for name in CLASSES
            },
        },
    )


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


def test_cutflow_tables(tmp_path):
    for sample, passed in (("A", [100.0, 50.0, 10.0]), ("data", [1000.0, 400.0, 40.0])):
        write_json(
            tmp_path / f"{sample}.json",
            {
                "sample": sample,
                "cuts": [
                    {"name": name, "events": value, "weighted": 2 * value}
                    for name, value in zip(("all", "muon", "tau_pair"), passed, strict=True)
                ],
            },
        )
    cutflows = plot_distributions.read_cutflows([tmp_path / "A.json", tmp_path / "data.json"])
    markdown, latex = plot_distributions.cutflow_tables(cutflows)
    assert "| tau_pair | 10 (10.00%) | 40 (4.00%) |" in markdown
    assert r"tau\_pair & 10 (10.00\%) & 40 (4.00\%) \\" in latex
    written = plot_distributions.plot_cutflow(cutflows, tmp_path / "cutflow", STYLE)
    png_ok(written[0])


def test_feature_figures_fill_like_numpy(tmp_path, monkeypatch):
    """Stacked counts per region equal a plain numpy histogram of the same selection; blinding
    hides data where the simulated S/B exceeds the threshold."""
    rng = np.random.default_rng(5)
    skims, friends, processes = [], [], []
    for sample, process, n in (("Z", "ZTT", 400), ("T", "TT", 200), ("data", "data", 500)):
        columns = {
            "run": np.ones(n, dtype=np.int64),
            "luminosityBlock": np.ones(n, dtype=np.int64),
            "event": np.arange(n, dtype=np.int64),
            "m_vis": rng.normal(90 if process == "ZTT" else 120, 20, n),
            "njets": rng.integers(0, 4, n).astype(np.int32),
            "is_os": rng.integers(0, 2, n).astype(np.int32),
        }
        weight = rng.uniform(0.5, 1.5, n) if process != "data" else np.ones(n)
        write_tree(tmp_path / f"{sample}.root", columns)
        write_tree(
            tmp_path / f"{sample}_friend.root",
            {key: columns[key] for key in ("run", "luminosityBlock", "event")} | {"weight": weight},
        )
        skims.append(str(tmp_path / f"{sample}.root"))
        friends.append(str(tmp_path / f"{sample}_friend.root"))
        processes.append(process)
    events = plot_distributions.load_events(skims, friends, processes, ["m_vis", "njets", "is_os"])
    os_mask = events["ZTT"]["is_os"] == 1
    edges = plot_distributions.feature_edges(events["ZTT"]["njets"][os_mask], 10)
    np.testing.assert_array_equal(edges, [-0.5, 0.5, 1.5, 2.5, 3.5])
    counts, _ = plot_distributions._fill(
        events["ZTT"]["njets"][os_mask], events["ZTT"]["weight"][os_mask], edges
    )
    expected = [
        events["ZTT"]["weight"][os_mask & (events["ZTT"]["njets"] == k)].sum() for k in range(4)
    ]
    np.testing.assert_allclose(counts, expected)
    written = plot_distributions.plot_features(
        events, ["m_vis", "njets"], SETTINGS["regions"], 10, tmp_path / "features", STYLE
    )
    assert sorted(p.name for p in written if p.suffix == ".png") == [
        "os_m_vis.png", "os_njets.png", "ss_m_vis.png", "ss_njets.png"
    ]  # fmt: skip
    with pytest.raises(AnalysisError, match="plots.regions.bad: column 'nope'"):
        plot_distributions.plot_features(
            events, ["m_vis"], {"bad": {"nope": 1}}, 10, tmp_path / "f", STYLE
        )

    # blinded (TT as the signal): data hidden exactly where TT/ZTT > 1 in the simulation
    drawn = {}
    draw = plot_distributions.plot_stack

    def record(edges, stack, data, xlabel, prefix, style, **options):
        drawn[Path(prefix).name] = (edges, data, options["blinded"])
        return draw(edges, stack, data, xlabel, prefix, style, **options)

    monkeypatch.setattr(plot_distributions, "plot_stack", record)
    written = plot_distributions.plot_features(
        events, ["m_vis"], {"os": {"is_os": 1}}, 10, tmp_path / "blinded", STYLE,
        {"signals": ["TT"], "threshold": 1.0},
    )  # fmt: skip
    edges, data, blinded = drawn["os_m_vis"]
    tt, ztt = (
        np.histogram(
            np.clip(events[p]["m_vis"], edges[0], np.nextafter(edges[-1], -np.inf)), edges,
            weights=events[p]["weight"] * (events[p]["is_os"] == 1),
        )[0]
        for p in ("TT", "ZTT")
    )  # fmt: skip
    np.testing.assert_array_equal(blinded, tt > ztt)
    assert 0 < blinded.sum() < len(blinded)
    assert np.isfinite(data).all(), "data are passed whole; plot_stack hides the blinded bins"
    png_ok(next(p for p in written if p.suffix == ".png"))


def test_same_inputs_same_bytes(tmp_path):
    diagnostics_file(tmp_path)
    first = plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "a", STYLE)
    second = plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "b", STYLE)
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.suffix


@pytest.mark.parametrize("name", ["roc", "postfit"])
def test_reference_images(name, fit_inputs, tmp_path):
    """Key figures against stored references (fixed inputs); a silent change of style or
    content fails. Rewrite with UPDATE_REFERENCE_PLOTS=1 after an intended change."""
    style = style_from_settings({**SETTINGS, "formats": ["png"], "dpi": 50})
    if name == "roc":
        diagnostics_file(tmp_path)
        actual = plot_training.plot_roc(str(tmp_path / "diagnostics.json"), tmp_path / "roc", style)
    else:
        directory, _, _ = fit_inputs
        plot_stacks.plot_prepostfit(
            str(directory / "workspace.json"), str(directory / "fit.json"), tmp_path, style
        )
        actual = [tmp_path / "low_postfit.png"]
    reference = REFERENCES / f"{name}.png"
    if os.environ.get("UPDATE_REFERENCE_PLOTS") == "1":
        REFERENCES.mkdir(parents=True, exist_ok=True)
        reference.write_bytes(actual[0].read_bytes())
    result = compare_images(str(reference), str(actual[0]), tol=5)
    assert result is None, result


def test_style_errors():
    with pytest.raises(AnalysisError, match="plots.style"):
        style_from_settings({"style": "NOPE"})
    assert style_from_settings(json.dumps(SETTINGS)).formats == ("png", "pdf")
