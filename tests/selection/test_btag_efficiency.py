"""The b-tagging efficiency map measured in the simulation (analysis/selection/btag_efficiency.py):
counts by hand, the fallback of empty bins, and the written map against an independent count."""

from __future__ import annotations

import correctionlib
import numpy as np
import pytest
import uproot

from analysis.core.config import MEASURED, btag_efficiency_measured
from analysis.core.errors import AnalysisError
from analysis.core.io import read_tree
from analysis.selection import btag_efficiency as be
from analysis.selection.corrections import SchemaCorrection
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings, with_correction_branches


def test_counts_and_efficiencies_by_hand():
    # catches weights not summed, tagged jets of another flavour counted, or an empty bin left
    # at 0 (every untagged jet there would get the weight 1 - SF instead of its flavour's)
    jets = {
        "pt": np.array([25.0, 25.0, 25.0, 500.0, 35.0]),
        "abseta": np.array([0.1, 0.1, 0.1, 2.0, 0.1]),
        "flavour": np.array([5, 5, 0, 5, 0]),
        "tagged": np.array([True, False, True, True, False]),
    }
    counts = be._histogram(jets, np.array([2.0, 1.0, 1.0, 1.0, 3.0]))
    b, light = be.FLAVOURS.index(5), be.FLAVOURS.index(0)
    assert counts[0, b, 0, 0] == 3.0 and counts[1, b, 0, 0] == 2.0
    assert counts[0, b, 2, -1] == 1.0 and counts[1, b, 2, -1] == 1.0  # clamped beyond 1000 GeV
    assert counts[0, light, 0, 0] == 1.0 and counts[1, light, 0, 0] == 1.0
    values = be.efficiencies(counts)
    assert values[b, 0, 0] == pytest.approx(2 / 3) and values[b, 2, -1] == 1.0
    assert values[light, 0, 1] == 0.0  # the 35 GeV light jet, untagged
    assert values[b, 1, 3] == pytest.approx(3 / 4)  # empty bin: all b jets, 3 of 4 tagged
    assert be.efficiencies(np.zeros_like(counts))[0, 0, 0] == 0.0


def test_measured_map_equals_an_independent_count(
    tmp_path, toy_files, default_config, default_samples
):
    """The map counts the b-tagging candidates of the events the analysis selects (without its
    b-jet cut), as BTV's recipe asks: an independent loop over the events of the preselection's
    skim, their jets cleaned against the skim's muon and tau_h by hand. Catches every jet of
    every event counted (the map before this recipe), the acceptance, cleaning or working point
    not applied, flavours mixed up, or a file the b-tagging weight cannot read by its names."""
    nano = with_correction_branches(toy_files["TT"], tmp_path / "TT.root")
    settings = preselect_settings(default_config)
    settings["selection"]["max_bjets"] = None  # the skim: every event the measurement counts
    run_preselection("TT", default_samples["TT"], [str(nano)], settings, tmp_path / "skims",
                     chunksize=4000)  # fmt: skip
    settings["selection"]["max_bjets"] = 0  # a b-jet veto, which the measurement leaves out
    settings["weights"]["corrections"] = {"btag": {
        "file": "unused", "correction": "deepJet_mujets", "light_correction": "deepJet_incl",
        "working_point": "M", "systematics": ["central", "up", "down"],
        "efficiency": {"file": MEASURED, "correction": "btag_efficiency"},
    }}  # fmt: skip
    assert btag_efficiency_measured(settings["weights"])
    output = tmp_path / "btag_efficiency.json"
    values = be.measure([str(nano)], settings, str(output))

    expected, everywhere = _count_by_hand(nano, tmp_path / "skims", settings["selection"])
    assert 50 < expected[0] < everywhere[0], (expected, everywhere)
    counts = be.count_jets(str(nano), settings)[:, be.FLAVOURS.index(5), 0, 1]
    np.testing.assert_allclose(counts, expected, rtol=1e-9)
    # read in chunks of 700 events: the same counts (no event lost or doubled at a boundary)
    chunked = be.count_jets(str(nano), settings, chunksize=700)
    np.testing.assert_allclose(chunked, be.count_jets(str(nano), settings), rtol=1e-12)
    efficiency = expected[1] / expected[0]
    correction = correctionlib.CorrectionSet.from_file(str(output))["btag_efficiency"]
    assert correction.evaluate("M", 5, 0.3, 40.0) == pytest.approx(efficiency, rel=1e-9)
    assert values[be.FLAVOURS.index(5), 0, 1] == pytest.approx(efficiency, rel=1e-9)
    read = SchemaCorrection(
        {"file": str(output), "correction": "btag_efficiency", "constants": {"working_point": "M"}},
        "weights.corrections.btag.efficiency", ("flavor", "abseta", "pt"), systematic=False,
    )  # fmt: skip
    assert read.evaluate({"flavor": [5], "abseta": [0.3], "pt": [40.0]})[0] == pytest.approx(
        efficiency, rel=1e-9
    )
    missing = tmp_path / "missing.root"
    with pytest.raises(AnalysisError, match=f"input file {missing} not found"):
        be.measure([str(missing)], settings, str(tmp_path / "none.json"))
    assert not (tmp_path / "none.json").exists()


def _count_by_hand(nano, skims, cuts):
    """Summed generator weights (all, tagged) of the b jets with |eta| < 0.8 and 30 <= pT < 50
    GeV: of the skim's events (the selection without a b-jet cut), jets cleaned against the
    skim's muon and tau_h; and of every event, uncleaned (the map before BTV's recipe)."""
    skim = read_tree(skims / "nominal.root", ["event", "eta_1", "phi_1", "eta_2", "phi_2"])
    leptons = {int(event): rest for event, *rest in zip(*skim.values(), strict=True)}
    with uproot.open(nano) as fin:
        arrays = fin["Events"].arrays(
            ["event", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_hadronFlavour", "Jet_btagDeepFlavB",
             "Jet_jetId", "genWeight"], library="np",
        )  # fmt: skip
    bjet, jet = cuts["bjet"], cuts["jet"]
    selected_sums, all_sums = np.zeros(2), np.zeros(2)
    for event, pt, eta, phi, flavour, score, jet_id, weight in zip(*arrays.values(), strict=True):
        in_bin = (pt > bjet["pt"]) & (np.abs(eta) < bjet["eta"]) & (jet_id >= jet["id_min"])
        in_bin &= (flavour == 5) & (np.abs(eta) < 0.8) & (pt >= 30.0) & (pt < 50.0)
        tagged = score > bjet["wp"]
        all_sums += weight * np.array([in_bin.sum(), (in_bin & tagged).sum()])
        if int(event) not in leptons:
            continue
        eta_1, phi_1, eta_2, phi_2 = leptons[int(event)]
        clean = (_delta_r(eta, phi, eta_1, phi_1) > jet["min_dr"]) & (
            _delta_r(eta, phi, eta_2, phi_2) > jet["min_dr"]
        )
        selected_sums += weight * np.array(
            [(in_bin & clean).sum(), (in_bin & clean & tagged).sum()]
        )
    return selected_sums, all_sums


def _delta_r(eta, phi, other_eta, other_phi):
    dphi = (phi - other_phi + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta - other_eta, dphi)
