"""Workspace: modifiers value by value on a hand-made case, pruning, blinded (Asimov) and
unblinded observations, bytes, closure."""

from __future__ import annotations

import json

import hist
import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats.workspace import build_workspace, symmetrized

SETTINGS = {
    "poi": "combined",
    "poi_bounds": [0.0, 10.0],
    "lumi_uncertainty": 0.025,
    "normalization": {"B": 0.1},
    "symmetrize": "one_sided",
    "smoothing": False,
    "staterror_threshold": 0.01,
    "pruning": {"norm": 0.001, "shape": 0.001},
}
HISTOGRAM_SETTINGS = {"signals": ["S"], "qcd": {"from_data": False, "process": "QCD"}}


def make(values, variances=None):
    h = hist.Hist(hist.axis.Regular(len(values), 0, 1), storage=hist.storage.Weight())
    h.view().value = np.asarray(values, float)
    h.view().variance = np.asarray(values if variances is None else variances, float)
    return h


def two_bin_case():
    return {
        "sr/data/nominal": make([40, 30]),
        "sr/S/nominal": make([2, 8], [0.5, 1.0]),
        "sr/B/nominal": make([10, 20], [1.0, 4.0]),
        "sr/B/es_up": make([12, 21]),
        "sr/B/es_down": make([9, 18]),
        "sr/B/tune_up": make([11, 19]),  # one-sided: mirrored
        "sr/B/tiny_up": make([10.0001, 20.0001]),
        "sr/B/tiny_down": make([9.9999, 19.9999]),
    }


def modifiers(spec, sample):
    channel = spec["channels"][0]
    return {
        (m["name"], m["type"]): m["data"]
        for s in channel["samples"]
        if s["name"] == sample
        for m in s["modifiers"]
    }


def test_two_bin_modifiers_value_by_value():
    spec, pruned = build_workspace(two_bin_case(), SETTINGS, HISTOGRAM_SETTINGS, unblind=True)
    background = modifiers(spec, "B")
    # es: norm 33/30 and 27/30, shapes are the templates scaled back to the nominal yield
    assert background[("es", "normsys")] == pytest.approx({"hi": 1.1, "lo": 0.9})
    histosys = background[("es", "histosys")]
    assert histosys["hi_data"] == pytest.approx([12 / 1.1, 21 / 1.1])
    assert histosys["lo_data"] == pytest.approx([9 / 0.9, 18 / 0.9])
    # tune (one-sided) mirrored: down = 2 * nominal - up = [9, 21]; both sums are 30, so its
    # normsys is pruned and only the histosys stays
    assert ("tune", "normsys") not in background
    assert background[("tune", "histosys")]["lo_data"] == pytest.approx([9, 21])
    assert background[("xsec_B", "normsys")] == {"hi": 1.1, "lo": 0.9}
    assert ("lumi", "lumi") in background
    assert background[("staterror_sr", "staterror")] == pytest.approx([1.0, 2.0])
    signal = modifiers(spec, "S")
    assert ("mu", "normfactor") in signal and signal[
        ("staterror_sr", "staterror")
    ] == pytest.approx([np.sqrt(0.5), 1.0])
    # listed: tiny entirely, and the normsys of tune
    assert [(p["systematic"], p["dropped"]) for p in pruned if p["process"] == "B"] == [
        ("tiny", ["histosys", "normsys"]), ("tune", ["normsys"])
    ]  # fmt: skip
    tiny = next(p for p in pruned if p["systematic"] == "tiny")
    assert tiny["norm"] == pytest.approx(0.2 / 30 / 1000 * 1.0, rel=1e-3)
    measurement = spec["measurements"][0]["config"]
    assert measurement["poi"] == "mu"
    lumi = next(p for p in measurement["parameters"] if p["name"] == "lumi")
    assert lumi["sigmas"] == [0.025]
    pyhf.Workspace(spec)  # valid against the schema


def test_one_era_luminosity_components_add_in_quadrature():
    """Components of one era scale the same yields: one lumi parameter of their quadrature sum."""
    settings = {**SETTINGS, "lumi_uncertainty": {"lumi_2018": 0.03, "lumi_13TeV": 0.04}}
    spec, _ = build_workspace(two_bin_case(), settings, HISTOGRAM_SETTINGS, unblind=True)
    parameters = spec["measurements"][0]["config"]["parameters"]
    lumi = next(p for p in parameters if p["name"] == "lumi")
    assert lumi["sigmas"] == [pytest.approx(0.05, rel=1e-12)]
    assert lumi["bounds"] == [[pytest.approx(0.75), pytest.approx(1.25)]]


def test_symmetrize_all_and_staterror_threshold():
    up, down = symmetrized(np.array([10.0]), np.array([13.0]), np.array([9.0]), "all")
    assert (up[0], down[0]) == (12.0, 8.0)
    settings = {**SETTINGS, "staterror_threshold": 0.1}
    spec, _ = build_workspace(two_bin_case(), settings, HISTOGRAM_SETTINGS, unblind=True)
    # relative MC uncertainty: bin 0 sqrt(1.5)/12 = 0.10, bin 1 sqrt(5)/28 = 0.08 < 0.1
    assert modifiers(spec, "B")[("staterror_sr", "staterror")] == pytest.approx([1.0, 0.0])


def test_blinded_observations_are_asimov_and_bytes_are_stable():
    """Blinded: every observation is the nominal prediction (S + B at mu = 1), whatever the data
    histogram says, or none at all (histograms.root holds none while blinded). The bugs: data
    leaking into the workspace, or an error asking for the data a blinded file leaves out."""
    histograms = two_bin_case()
    first, _ = build_workspace(histograms, SETTINGS, HISTOGRAM_SETTINGS, unblind=False)
    del histograms["sr/data/nominal"]
    second, _ = build_workspace(histograms, SETTINGS, HISTOGRAM_SETTINGS, unblind=False)
    assert first["observations"] == [{"name": "sr", "data": [12.0, 28.0]}]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    # equal to the pyhf model's Asimov main data (constrained at nominal, mu at its init of 1)
    model = pyhf.Workspace(first).model()
    expected = model.expected_data(model.config.suggested_init(), include_auxdata=False)
    assert first["observations"][0]["data"] == pytest.approx(np.asarray(expected).tolist())


def test_unblinded_observations_are_the_data_and_are_required():
    spec, _ = build_workspace(two_bin_case(), SETTINGS, HISTOGRAM_SETTINGS, unblind=True)
    assert spec["observations"] == [{"name": "sr", "data": [40.0, 30.0]}]
    histograms = two_bin_case()
    del histograms["sr/data/nominal"]
    with pytest.raises(AnalysisError, match="channel 'sr': no data histogram"):
        build_workspace(histograms, SETTINGS, HISTOGRAM_SETTINGS, unblind=True)


def test_closure_recovers_mu_and_a_shifted_nuisance():
    rng = np.random.default_rng(11)
    edges = 8
    x = np.linspace(0.05, 0.95, edges)
    signal = 50 * np.exp(-((x - 0.8) ** 2) / 0.02)
    background = 1000 * np.exp(-2 * x)
    # the systematic moves background from low to high scores and changes its yield by +-5%
    up, down = background * (1.05 + 0.3 * (x - 0.5)), background * (0.95 - 0.3 * (x - 0.5))
    mu_true = 2.0
    data = rng.poisson(mu_true * signal + up)  # nuisance at +1 sigma: exactly the up template
    histograms = {
        "sr/data/nominal": make(data),
        "sr/S/nominal": make(signal, signal * 1e-4),
        "sr/B/nominal": make(background, background * 1e-4),
        "sr/B/syst_up": make(up),
        "sr/B/syst_down": make(down),
    }
    settings = {**SETTINGS, "normalization": {}}
    spec, _ = build_workspace(histograms, settings, HISTOGRAM_SETTINGS, unblind=True)
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    result = pyhf.infer.mle.fit(workspace.data(model), model, return_uncertainties=True)
    mu, mu_error = result[model.config.poi_index]
    syst, syst_error = result[model.config.par_slice("syst")][0]
    assert abs(mu - mu_true) < 2 * mu_error, (mu, mu_error)
    assert abs(syst - 1.0) < 2 * syst_error, (syst, syst_error)
    assert syst_error < 0.8  # the data constrain the nuisance, so the test has power


def era_histograms():
    """Two per-era channels as the histograms step writes them (lumi_<era> variations)."""
    histograms = {}
    for era, sigma in (("a", 0.02), ("b", 0.05)):
        histograms.update({
            f"sr_{era}/S/nominal": make([2, 8], [0.5, 1.0]),
            f"sr_{era}/B/nominal": make([10, 20], [1.0, 4.0]),
            f"sr_{era}/B/es_up": make([12, 21]),
            f"sr_{era}/B/lumi_{era}_up": make([10 * (1 + sigma), 20 * (1 + sigma)]),
            f"sr_{era}/B/lumi_{era}_down": make([10 * (1 - sigma), 20 * (1 - sigma)]),
        })  # fmt: skip
    return histograms


def test_per_era_channels_name_their_parameters_by_era():
    eras = {"names": ["a", "b"], "channels": "per_era", "decorrelated": ["xsec_*"],
            "lumi_uncertainty": {"a": 0.02, "b": 0.05}}  # fmt: skip
    spec, _ = build_workspace(era_histograms(), SETTINGS, HISTOGRAM_SETTINGS, unblind=False,
                              eras=eras)  # fmt: skip
    by_channel = {
        channel["name"]: {(m["name"], m["type"]): m["data"] for s in channel["samples"]
                          if s["name"] == "B" for m in s["modifiers"]}
        for channel in spec["channels"]
    }  # fmt: skip
    for era, sigma in (("a", 0.02), ("b", 0.05)):
        other = "b" if era == "a" else "a"
        names = {name for name, _ in by_channel[f"sr_{era}"]}
        assert {f"xsec_B_{era}", f"lumi_{era}", "es", f"staterror_sr_{era}"} <= names
        assert not {"lumi", "xsec_B", f"xsec_B_{other}", f"lumi_{other}"} & names
        lumi = by_channel[f"sr_{era}"][(f"lumi_{era}", "normsys")]
        assert lumi == pytest.approx({"hi": 1 + sigma, "lo": 1 - sigma})
    parameters = spec["measurements"][0]["config"]["parameters"]
    assert [p["name"] for p in parameters] == ["mu"], "no pyhf lumi parameter with several eras"
    model = pyhf.Workspace(spec).model()
    assert {"lumi_a", "lumi_b", "xsec_B_a", "xsec_B_b", "es"} <= set(model.config.par_order)
    # merged channels keep one name for the normalisation uncertainties
    merged = {**eras, "channels": "merged"}
    spec, _ = build_workspace(era_histograms(), SETTINGS, HISTOGRAM_SETTINGS, unblind=False,
                              eras=merged)  # fmt: skip
    names = {m["name"] for c in spec["channels"] for s in c["samples"] for m in s["modifiers"]}
    assert "xsec_B" in names and "xsec_B_a" not in names
