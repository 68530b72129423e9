"""The tau_h energy scale from a TAU POG-layout file (analysis/selection/tauenergy.py): values
against a direct correctionlib evaluation, the MET following, data untouched, and the
preselection's tau_es skims."""

from __future__ import annotations

import awkward as ak
import correctionlib
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from analysis.core.config import shape_variations
from analysis.core.errors import AnalysisError
from analysis.core.io import read_tree
from analysis.core.variations import Variation
from analysis.selection import correction_files as cf
from analysis.selection.preselect import run_preselection
from analysis.selection.tauenergy import TauEnergy
from tests.conftest import preselect_settings

SPEC = {"correction": "tau_energy_scale", "systematics": ["nom", "up", "down"],
        "constants": {"id": cf.TAU_ES_ID}}  # fmt: skip


@pytest.fixture(scope="module")
def tes(tmp_path_factory, toy_files):
    """The ZTT toy (genuine tau_h, electrons and jets faking one) and the generated tau file."""
    directory = tmp_path_factory.mktemp("tauenergy")
    files = cf.write_all(directory / "corrections", np.full(10, 30.0))
    events = NanoEventsFactory.from_root(
        {str(toy_files["ZTT"]): "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()
    return {"spec": {**SPEC, "file": str(files["tau"])}, "events": events, "directory": directory}


def _nominal(events):
    """The objects of the energy scale, every generator match of NanoAOD among the tau_h (the
    toy's are all genuine): 5, 1, 3 (electrons), 2, 4 (muons), 0 (jets) in turn."""
    met_pt, met_phi = events.MET.pt, events.MET.phi
    matches = np.array([5, 1, 3, 2, 4, 0], dtype=np.int32)
    index = np.arange(ak.sum(ak.num(events.Tau)))
    return {
        "taus": events.Tau,
        "genmatch": ak.unflatten(matches[index % len(matches)], ak.num(events.Tau)),
        "met_x": met_pt * np.cos(met_phi),
        "met_y": met_pt * np.sin(met_phi),
    }


def _flat(values):
    return np.asarray(ak.to_numpy(ak.flatten(values)), dtype=np.float64)


def test_energy_scale_equals_the_correction_and_moves_the_met(tes):
    # catches the factor of another genmatch, decay mode or systematic, up/down applied on top of
    # the nominal factor twice, or the MET not following the tau_h
    events, spec = tes["events"], tes["spec"]
    correction = correctionlib.CorrectionSet.from_file(spec["file"])["tau_energy_scale"]
    taus, nominal = events.Tau, _nominal(events)
    pt, eta = _flat(taus.pt), _flat(taus.eta)
    dm = _flat(taus.decayMode).astype(np.int32)
    genmatch = _flat(nominal["genmatch"]).astype(np.int32)
    assert len(pt) > 1000 and np.any(np.abs(eta) > 1.5) and {0, 1, 10}.issubset(set(dm.tolist()))

    def direct(syst):
        return correction.evaluate(pt, eta, dm, genmatch, cf.TAU_ES_ID, syst)

    tau_energy = TauEnergy({"tau_es_correction": spec}, simulation=True)
    corrected = tau_energy.corrected(nominal)
    np.testing.assert_allclose(_flat(corrected["taus"].pt), pt * direct("nom"), rtol=1e-6)
    np.testing.assert_allclose(_flat(corrected["taus"].mass), _flat(taus.mass) * direct("nom"),
                               rtol=1e-6)  # fmt: skip
    assert np.all(direct("nom")[genmatch == 0] == 1.0)  # jets: no correction
    assert len(np.unique(direct("nom")[(genmatch == 1) & (dm == 0)])) == 2  # barrel, endcaps
    change = ak.sum(taus.pt * (ak.unflatten(direct("nom"), ak.num(taus)) - 1) * np.cos(taus.phi),
                    axis=1)  # fmt: skip
    np.testing.assert_allclose(
        ak.to_numpy(corrected["met_x"]), ak.to_numpy(nominal["met_x"] - change), atol=1e-3
    )
    for direction in ("up", "down"):
        moved = tau_energy.shift(corrected, Variation("tau_es", direction))
        np.testing.assert_allclose(_flat(moved["taus"].pt), pt * direct(direction), rtol=1e-6)
    untouched = TauEnergy({"tau_es_correction": spec}, simulation=False).corrected(nominal)
    assert untouched is nominal


def test_preselection_writes_the_tau_es_skims_from_the_file(tes, toy_files, default_config,
                                                            default_samples):  # fmt: skip
    # catches tau_es variations missing once the toy's per-decay-mode uncertainties are off, the
    # nominal skim without the nominal energy scale, or both ways of tau_es accepted together
    settings = preselect_settings(default_config)
    settings["variations"].update(
        tau_es=None, tau_es_correction=tes["spec"], jet_es=None, met_unclustered=False
    )
    assert shape_variations(settings["variations"]) == ["nominal", "tau_es_up", "tau_es_down"]
    with pytest.raises(AnalysisError, match="variations.tau_es and variations.tau_es_correction"):
        shape_variations({**settings["variations"], "tau_es": {"0": 0.01}})
    outputs = {}
    for label, variations in (
        ("file", settings["variations"]),
        ("plain", {**settings["variations"], "tau_es_correction": None}),
    ):
        outputs[label] = tes["directory"] / label
        run_preselection(
            "ZTT", default_samples["ZTT"], [str(toy_files["ZTT"])],
            {**settings, "variations": variations}, outputs[label], chunksize=5000,
            dask={"mode": "none"},
        )  # fmt: skip
    corrected, plain = (read_tree(outputs[k] / "nominal.root") for k in ("file", "plain"))
    both = np.intersect1d(corrected["event"], plain["event"])
    ratio = (corrected["pt_2"][np.isin(corrected["event"], both)]
             / plain["pt_2"][np.isin(plain["event"], both)])  # fmt: skip
    genuine = [es for es, _ in cf.TAU_ES.values()]
    assert np.mean(np.isclose(ratio[:, None], genuine, rtol=1e-5).any(axis=1)) > 0.8
    up = read_tree(outputs["file"] / "tau_es_up.root")
    assert len(up["event"]) > 0 and np.mean(up["pt_2"]) > np.mean(corrected["pt_2"])
