"""Small synthetic stage outputs the figure tests draw: a fitted two-channel workspace, a
histograms file, training diagnostics, cutflows and skims with friends."""

from __future__ import annotations

from pathlib import Path

import hist
import numpy as np
import pyhf
import uproot

from analysis.core.config import load_yaml
from analysis.core.io import write_json, write_tree
from analysis.plots.style import style_from_settings
from analysis.stats import model as model_utils
from analysis.stats import pulls as pulls_stage
from analysis.stats.results import (
    FitResults,
    GoodnessOfFit,
    Impact,
    Limit,
    LimitResults,
    RankingResults,
    Scan2DResults,
    ScanResults,
)
from tests.conftest import REPO

#: The shipped plots section (labels included) with small figures and tiny-input options.
SETTINGS = {
    **load_yaml(REPO / "config" / "config.yaml")["plots"],
    "lumi_text": "1 fb$^{-1}$ (13 TeV)",
    "formats": ["png", "pdf"],
    "dpi": 60,
    "feature_bins": 10,
    "regions": {"os": {"is_os": 1}, "ss": {"is_os": 0}},
    "taylor_top": 5,
    "ranking_top": 3,
    "correlation_threshold": 0.1,
}
STYLE = style_from_settings(SETTINGS)
CLASSES = ["sig", "bkg"]
#: The histograms.qcd section of the shipped config.
QCD = load_yaml(REPO / "config" / "config.yaml")["histograms"]["qcd"]


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


def write_cutflows(directory: Path) -> list[Path]:
    """Cutflow files of a simulated sample ``A`` and of data, as the preselection writes them."""
    paths = []
    for sample, passed in (("A", [100.0, 50.0, 10.0]), ("data", [1000.0, 400.0, 40.0])):
        paths.append(directory / f"{sample}.json")
        write_json(
            paths[-1],
            {
                "sample": sample,
                "cuts": [
                    {"name": name, "events": value, "weighted": 2 * value}
                    for name, value in zip(("all", "muon", "tau_pair"), passed, strict=True)
                ],
            },
        )
    return paths


def write_feature_inputs(
    directory: Path, samples=(("Z", "ZTT", 400), ("T", "TT", 200), ("data", "data", 500))
) -> tuple[list[str], list[str], list[str]]:
    """Skims with ``m_vis``, ``njets``, ``is_os`` and their friends (``weight``) of ``samples``
    (name, process, events); returns the skims, friends and processes."""
    rng = np.random.default_rng(5)
    skims, friends, processes = [], [], []
    for sample, process, n in samples:
        columns = {
            "run": np.ones(n, dtype=np.int64),
            "luminosityBlock": np.ones(n, dtype=np.int64),
            "event": np.arange(n, dtype=np.int64),
            "m_vis": rng.normal(90 if process == "ZTT" else 120, 20, n),
            "njets": rng.integers(0, 4, n).astype(np.int32),
            "is_os": rng.integers(0, 2, n).astype(np.int32),
        }
        weight = rng.uniform(0.5, 1.5, n) if process != "data" else np.ones(n)
        write_tree(directory / f"{sample}.root", columns)
        write_tree(
            directory / f"{sample}_friend.root",
            {key: columns[key] for key in ("run", "luminosityBlock", "event")} | {"weight": weight},
        )
        skims.append(str(directory / f"{sample}.root"))
        friends.append(str(directory / f"{sample}_friend.root"))
        processes.append(process)
    return skims, friends, processes


def write_fit_inputs(directory: Path) -> tuple[pyhf.pdf.Model, FitResults]:
    """Write the tiny workspace, its fit with pyhf/minuit (fit.json contract) and fake later
    outputs (pulls, ranking, scans, limits) into ``directory``."""
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
    return model, fit
