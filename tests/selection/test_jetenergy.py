"""JER smearing (hybrid, seeded per event), JES uncertainty sources and the correctionlib jet ID
from JME-layout files: values by hand, reproducibility, and the expected resolution."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from analysis.core.config import shape_variations
from analysis.core.io import EVENT_KEYS, read_tree
from analysis.core.variations import Variation
from analysis.selection import correction_files as cf
from analysis.selection.jetenergy import (
    JetEnergy,
    jet_id_correction,
    jet_normals,
    smearing_factor,
    with_jet_id,
)
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings, with_correction_branches

JER = {
    "scale_factor": "Summer19UL18_JRV2_MC_ScaleFactor_AK4PFchs",
    "resolution": "Summer19UL18_JRV2_MC_PtResolution_AK4PFchs",
    "systematics": ["nom", "up", "down"],
}
JES = {"correction": "Summer19UL18_V5_MC_{source}_AK4PFchs", "sources": list(cf.JES_SOURCES)}


@pytest.fixture(scope="module")
def jme(tmp_path_factory, toy_files):
    """The TT toy with generator jets and rho, and the generated JME and jet ID files."""
    directory = tmp_path_factory.mktemp("jetenergy")
    nano = with_correction_branches(toy_files["TT"], directory / "TT.root")
    files = cf.write_all(directory / "corrections", np.full(10, 30.0))
    variations = {
        "jer": {**JER, "file": str(files["jme"])},
        "jes_sources": {**JES, "file": str(files["jme"])},
    }
    events = NanoEventsFactory.from_root(
        {str(nano): "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()
    return {
        "nano": nano,
        "files": files,
        "variations": variations,
        "events": events,
        "directory": directory,
    }


def _nominal(events):
    met_pt, met_phi = events.MET.pt, events.MET.phi
    return {
        "keys": {key: events[key] for key in EVENT_KEYS},
        "jets": events.Jet,
        "met_x": met_pt * np.cos(met_phi),
        "met_y": met_pt * np.sin(met_phi),
    }


def _np(values):
    return np.asarray(ak.to_numpy(ak.flatten(values)), dtype=np.float64)


def test_normals_depend_on_the_event_alone_and_are_standard():
    # catches draws that depend on the chunk (a rerun with another chunk size would differ) or
    # a broken Box-Muller (wrong width)
    n = 50000
    keys = {
        "run": np.full(n, 1, np.uint32),
        "luminosityBlock": np.arange(n, dtype=np.uint32) // 100,
        "event": np.arange(n, dtype=np.uint64) * 7,
    }
    counts = np.tile([0, 1, 3, 2], n // 4)
    whole = jet_normals(keys, counts)
    half = n // 2
    first = jet_normals({k: v[:half] for k, v in keys.items()}, counts[:half])
    second = jet_normals({k: v[half:] for k, v in keys.items()}, counts[half:])
    np.testing.assert_array_equal(whole, np.concatenate([first, second]))
    assert abs(whole.mean()) < 0.02 and abs(whole.std() - 1.0) < 0.02
    assert abs(np.corrcoef(whole[:-1], whole[1:])[0, 1]) < 0.02


def test_smearing_factor_by_hand():
    # catches the hybrid branches swapped, or the stochastic width without sqrt(SF^2 - 1)
    pt = np.array([100.0, 100.0, 50.0])
    gen = np.array([90.0, -1.0, -1.0])
    sigma = np.array([0.1, 0.1, 0.2])
    sf = np.array([1.2, 1.25, 0.9])
    normal = np.array([0.3, 2.0, 1.0])
    expected = [1 + 0.2 * 0.1, 1 + 2.0 * 0.1 * 0.75, 1.0]
    np.testing.assert_allclose(smearing_factor(pt, gen, sigma, sf, normal), expected)


def test_jer_smearing_by_hand_and_expected_resolution(jme):
    # catches matched jets not scaled by 1 + (SF-1)(pT-pT_gen)/pT, the scale factor of the
    # wrong eta bin, or unmatched jets smeared with a width other than sigma sqrt(SF^2 - 1)
    events = jme["events"]
    jet_energy = JetEnergy(jme["variations"], {"rho": "fixedGridRhoFastjetAll"}, True)
    smeared = jet_energy.smeared(events, _nominal(events))
    pt, eta = _np(events.Jet.pt), _np(events.Jet.eta)
    factor = _np(smeared["jets"].pt) / pt
    matched = _np(ak.local_index(events.Jet.pt)) % 2 == 0  # the file's generator jets
    bins = np.clip(np.digitize(eta, cf.JER_ETA_EDGES) - 1, 0, len(cf.JER_SF) - 1)  # clamp
    sf = np.asarray(cf.JER_SF)[bins]
    np.testing.assert_allclose(factor[matched], 1 + (sf[matched] - 1) * 0.05, rtol=1e-5)
    rho = np.repeat(ak.to_numpy(events.fixedGridRhoFastjetAll), ak.to_numpy(ak.num(events.Jet)))
    width = cf.jer_resolution(pt, rho) * np.sqrt(sf**2 - 1)
    pulls = (factor[~matched] - 1) / width[~matched]
    assert (~matched).sum() > 2000
    assert abs(pulls.std() - 1.0) < 0.05 and abs(pulls.mean()) < 0.05
    up = _np(jet_energy.shift(smeared, Variation("jer", "up"))["jets"].pt) / pt
    sf_up = sf + cf.JER_SF_UNC
    np.testing.assert_allclose(up[matched], 1 + (sf_up[matched] - 1) * 0.05, rtol=1e-5)


def test_jes_source_shift_by_hand(jme):
    # catches a source evaluated at the wrong pT bin or the down shift not mirrored
    events = jme["events"]
    jet_energy = JetEnergy(jme["variations"], {"rho": "fixedGridRhoFastjetAll"}, True)
    nominal = _nominal(events)
    pt = _np(events.Jet.pt)
    delta = np.where(pt < cf.JES_PT_EDGES[1], *cf.JES_SOURCES["FlavorQCD"])
    for direction, sign in (("up", 1.0), ("down", -1.0)):
        shifted = jet_energy.shift(nominal, Variation("jes_FlavorQCD", direction))
        np.testing.assert_allclose(_np(shifted["jets"].pt), pt * (1 + sign * delta), rtol=1e-6)


def test_jet_id_from_constituents(jme):
    # catches the correctionlib jet ID reading the wrong fields or the multiplicity sum missing
    spec = {"file": str(jme["files"]["jet_id"]), "correction": "AK4PUPPI_Tight"}
    jets = with_jet_id(jme["events"].Jet, jet_id_correction({"id_correction": spec}))
    eta = np.abs(_np(jets.eta))
    odd = _np(ak.local_index(jets.pt)) % 2 == 1  # neMultiplicity 2 in the file
    expected = (eta <= 3.0) | odd
    np.testing.assert_array_equal(np.asarray(ak.to_numpy(ak.flatten(jets.passJetId))), expected)


def test_preselection_smears_reproducibly_and_writes_the_shape_variations(
    jme, default_config, default_samples
):
    # catches smearing that changes with the chunking, JER/JES variations missing from the
    # skims, or a nominal skim left unsmeared
    settings = preselect_settings(default_config)
    settings["variations"].update(
        jme["variations"], tau_es=None, jet_es=None, met_unclustered=False
    )
    names = shape_variations(settings["variations"])
    assert names == [
        "nominal",
        "jer_up",
        "jer_down",
        "jes_Absolute_up",
        "jes_Absolute_down",
        "jes_FlavorQCD_up",
        "jes_FlavorQCD_down",
    ]
    outputs = {}
    for chunksize in (1000, 1700):
        outputs[chunksize] = jme["directory"] / f"skims{chunksize}"
        run_preselection(
            "TT",
            default_samples["TT"],
            [str(jme["nano"])],
            settings,
            outputs[chunksize],
            chunksize=chunksize,
            dask={"mode": "none"},
        )
    plain = jme["directory"] / "plain"
    unsmeared = preselect_settings(default_config)
    unsmeared["variations"].update(tau_es=None, jet_es=None, met_unclustered=False)
    run_preselection(
        "TT",
        default_samples["TT"],
        [str(jme["nano"])],
        unsmeared,
        plain,
        chunksize=1000,
        dask={"mode": "none"},
    )
    for name in names:
        first = read_tree(outputs[1000] / f"{name}.root")
        second = read_tree(outputs[1700] / f"{name}.root")
        for column in first:
            np.testing.assert_array_equal(first[column], second[column], err_msg=column)
    nominal, raw = read_tree(outputs[1000] / "nominal.root"), read_tree(plain / "nominal.root")
    both = np.intersect1d(nominal["event"], raw["event"])
    smeared = nominal["jpt_1"][np.isin(nominal["event"], both)]
    original = raw["jpt_1"][np.isin(raw["event"], both)]
    assert np.mean(smeared != original) > 0.5
