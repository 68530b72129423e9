"""Toy generator: determinism, NanoAOD layout readable by coffea, physics sanity, pseudo-data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import uproot

from analysis.core.errors import AnalysisError
from analysis.selection.toydata import generate_sample
from tests.conftest import toy_settings


@pytest.fixture(scope="module")
def settings(default_config, default_samples):
    return toy_settings(default_config, default_samples, events=3000)


def _arrays(path, branches):
    return uproot.open(path)["Events"].arrays(branches, library="ak")


def test_same_seed_same_bytes_other_seed_differs(tmp_path, settings):
    generate_sample("ggH", settings, tmp_path / "a.root")
    generate_sample("ggH", settings, tmp_path / "b.root")
    other = copy.deepcopy(settings)
    other["toydata"]["seed"] += 1
    generate_sample("ggH", other, tmp_path / "c.root")
    a, b, c = (_arrays(tmp_path / f"{x}.root", ["Tau_pt", "MET_pt", "Jet_pt"]) for x in "abc")
    for name in a.fields:
        assert a[name].tolist() == b[name].tolist()
    assert a["MET_pt"].tolist() != c["MET_pt"].tolist()


def test_nanoaod_layout_and_coffea_reads_it(toy_files):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    tree = uproot.open(toy_files["ZTT"])["Events"]
    keys = set(tree.keys())
    for branch in (
        "nMuon",
        "Muon_pt",
        "Muon_pfRelIso04_all",
        "Muon_tightId",
        "nTau",
        "Tau_decayMode",
        "Tau_idDeepTau2017v2p1VSjet",
        "Tau_genPartFlav",
        "nJet",
        "Jet_btagDeepFlavB",
        "MET_pt",
        "MET_phi",
        "genWeight",
        "puWeightUp",
        "nLHEScaleWeight",
        "LHEScaleWeight",
        "PSWeight",
        "run",
        "luminosityBlock",
        "event",
        "HLT_IsoMu24",
    ):
        assert branch in keys, branch
    assert tree["Tau_idDeepTau2017v2p1VSjet"].interpretation.content.to_dtype.kind == "u"
    events = NanoEventsFactory.from_root(
        {str(toy_files["ZTT"]): "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()
    assert len(events.Muon.pt) == tree.num_entries
    assert set(np.unique(np.asarray(events.Tau.decayMode[:, 0]))) <= {0, 1, 5, 6, 10, 11}
    runs = uproot.open(toy_files["ZTT"])["Runs"].arrays(library="np")
    genweight = tree["genWeight"].array(library="np")
    assert runs["genEventSumw"].sum() == pytest.approx(genweight.sum())
    assert (genweight < 0).any() and (genweight > 0).mean() > 0.8


def _masses(path):
    ev = _arrays(
        path,
        ["Muon_pt", "Muon_eta", "Muon_phi", "Tau_pt", "Tau_eta", "Tau_phi", "MET_pt", "MET_phi"],
    )
    mu_pt, tau_pt = np.asarray(ev.Muon_pt[:, 0]), np.asarray(ev.Tau_pt[:, 0])
    mt = np.sqrt(2 * mu_pt * ev.MET_pt * (1 - np.cos(np.asarray(ev.Muon_phi[:, 0]) - ev.MET_phi)))
    return mu_pt, tau_pt, np.asarray(mt)


def test_physics_is_sensible(tmp_path, settings, toy_files):
    from analysis.core.io import read_tree

    for name in ("ggH", "qqH", "QCD"):
        generate_sample(name, settings, tmp_path / f"{name}.root")
    files = {**toy_files, **{n: tmp_path / f"{n}.root" for n in ("ggH", "qqH", "QCD")}}
    # transverse mass: W+jets far above Z->tautau
    assert np.median(_masses(files["W"])[2]) > 2 * np.median(_masses(files["ZTT"])[2])
    # b jets in ttbar
    btag = {n: _arrays(files[n], ["Jet_btagDeepFlavB"]).Jet_btagDeepFlavB for n in ("TT", "ZTT")}
    assert (
        np.mean(np.sum(btag["TT"] > 0.277, axis=1))
        > 1.0
        > 10 * np.mean(np.sum(btag["ZTT"] > 0.277, axis=1))
    )
    # QCD: same-sign and opposite-sign alike; ZTT opposite sign
    charges = {n: _arrays(files[n], ["Muon_charge", "Tau_charge"]) for n in ("QCD", "ZTT")}
    os_fraction = {
        n: np.mean(np.asarray(c.Muon_charge[:, 0] * c.Tau_charge[:, 0]) < 0)
        for n, c in charges.items()
    }
    assert 0.4 < os_fraction["QCD"] < 0.6 and os_fraction["ZTT"] == 1.0
    # collinear mass separates H (125) from Z (91), visible mass lies below; VBF has large mjj
    from analysis.core.config import load_yaml
    from analysis.selection.preselect import run_preselection
    from tests.conftest import REPO, preselect_settings

    config = load_yaml(REPO / "config" / "config.yaml")
    samples = load_yaml(REPO / "config" / "samples.yaml")["samples"]
    medians = {}
    for name in ("ggH", "qqH", "ZTT"):
        run_preselection(
            name,
            samples[name],
            [str(files[name])],
            preselect_settings(config),
            tmp_path / name,
            chunksize=10_000,
            dask={"mode": "none"},
        )
        skim = read_tree(tmp_path / name / "nominal.root")
        medians[name] = {k: float(np.median(skim[k])) for k in ("m_vis", "m_coll", "mjj")}
    assert 110 < medians["ggH"]["m_coll"] < 140 and 80 < medians["ZTT"]["m_coll"] < 105
    assert medians["ggH"]["m_vis"] < medians["ggH"]["m_coll"] - 20
    assert medians["qqH"]["mjj"] > 400 > medians["ggH"]["mjj"]


def test_pseudo_data_follows_truth(tmp_path, default_config, default_samples):
    settings = toy_settings(default_config, default_samples, events=1000)
    settings["samples"] = {
        n: s for n, s in settings["samples"].items() if n in ("ggH", "qqH", "ZL", "data")
    }
    settings["tau_id_sf"] = None
    expected = settings["lumi"] * sum(
        s["xsec"] for n, s in settings["samples"].items() if n != "data"
    )
    generate_sample("data", settings, tmp_path / "data.root")
    tree = uproot.open(tmp_path / "data.root")["Events"]
    assert abs(tree.num_entries - expected) < 5 * np.sqrt(expected)
    assert "genWeight" not in tree.keys() and "Tau_genPartFlav" not in tree.keys()
    events = tree["event"].array(library="np")
    assert len(np.unique(events)) == len(events)
    # twice the signal strength gives more events; a tau energy-scale shift moves the tau pT up
    shifted = copy.deepcopy(settings)
    shifted["toydata"]["truth"] = {"mu": {"ggH": 2.0, "qqH": 2.0}, "nuisances": {"tau_es": 3.0}}
    generate_sample("data", shifted, tmp_path / "shifted.root")
    signal = settings["lumi"] * (
        settings["samples"]["ggH"]["xsec"] + settings["samples"]["qqH"]["xsec"]
    )
    shifted_tree = uproot.open(tmp_path / "shifted.root")["Events"]
    assert shifted_tree.num_entries - tree.num_entries == pytest.approx(
        signal, abs=6 * np.sqrt(expected)
    )
    assert np.mean(shifted_tree["Tau_pt"].array()[:, 0]) > np.mean(tree["Tau_pt"].array()[:, 0])


def test_unknown_sample_is_a_clear_error(tmp_path, settings):
    with pytest.raises(AnalysisError, match="sample 'nope' has no `toy` block"):
        generate_sample("nope", settings, tmp_path / "x.root")
    assert not (tmp_path / "x.root").exists()


def test_mismodelling_knob_shifts_one_variable_of_the_pseudo_data(tmp_path, default_config,
                                                                  default_samples):  # fmt: skip
    """``toydata.truth.mismodel`` adds its shift to the chosen variable of every pseudo-data
    event and changes nothing else (same events, same other branches); an unknown variable is
    one clear error: catches a shift applied to the wrong object, one that changes the random
    stream (other events), or a typo silently ignored."""
    settings = toy_settings(default_config, default_samples, events=500)
    settings["samples"] = {n: s for n, s in settings["samples"].items() if n in ("ZL", "data")}
    settings["tau_id_sf"] = None
    generate_sample("data", settings, tmp_path / "data.root")
    shifted = copy.deepcopy(settings)
    shifted["toydata"]["truth"]["mismodel"] = {"variable": "m_2", "shift": 0.2}
    generate_sample("data", shifted, tmp_path / "shifted.root")
    branches = ["Tau_mass", "Tau_pt", "Muon_eta", "MET_pt", "event"]
    plain = _arrays(tmp_path / "data.root", branches)
    moved = _arrays(tmp_path / "shifted.root", branches)
    assert len(plain) > 0
    np.testing.assert_allclose(moved["Tau_mass"] - plain["Tau_mass"], 0.2, atol=1e-5)
    for branch in branches[1:]:
        assert np.array_equal(moved[branch], plain[branch])
    shifted["toydata"]["truth"]["mismodel"] = {"variable": "mjj", "shift": 1.0}
    with pytest.raises(AnalysisError, match="toydata.truth.mismodel.variable: 'mjj'"):
        generate_sample("data", shifted, tmp_path / "bad.root")
