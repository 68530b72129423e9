"""Official-format scale factors evaluated in the preselection: skim columns value by value
against a direct correctionlib evaluation, the b-tagging event weight by hand, and the friend
trees' weights and variations built from them."""

from __future__ import annotations

import awkward as ak
import correctionlib
import numpy as np
import pytest
import uproot

from analysis.core.config import check_weights, correction_columns, weight_variation_columns
from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_tree
from analysis.selection import correction_files as cf
from analysis.selection.eventweights import EventCorrections
from analysis.selection.friends import make_friend
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings, with_correction_branches


def correction_settings(config: dict, files: dict) -> dict:
    """Preselection settings with every weight correction of the generated files."""
    settings = preselect_settings(config)
    weights = settings["weights"]
    weights["variations"]["pileup"] = None
    weights["tau_id_sf"] = None
    muon = {"file": str(files["muon"]), "systematics": ["nominal", "systup", "systdown"]}
    weights["corrections"] = {
        "pileup": {
            "file": str(files["pileup"]),
            "correction": cf.UL18["pileup"],
            "systematics": ["nominal", "up", "down"],
        },
        "muon_id": {**muon, "correction": cf.UL18["muon_id"]},
        "muon_iso": {**muon, "correction": cf.UL18["muon_iso"]},
        "muon_trigger": {**muon, "correction": cf.UL18["muon_trigger"]},
        "tau_id": {
            "file": str(files["tau"]),
            "correction": "DeepTau2018v2p5VSjet",
            "systematics": ["nom", "up", "down"],
            "constants": {"wp": "Medium", "wp_VSe": "VVLoose", "flag": "dm"},
        },
        "btag": {
            "file": str(files["btag"]),
            "correction": "deepJet_mujets",
            "light_correction": "deepJet_incl",
            "working_point": "M",
            "systematics": ["central", "up", "down"],
            "efficiency": {"file": str(files["btag_efficiency"]), "correction": "btag_efficiency"},
        },
    }
    return settings


@pytest.fixture(scope="module")
def corrected(tmp_path_factory, toy_files, default_config, default_samples):
    """The TT toy with the correction branches, its generated files and its preselection."""
    directory = tmp_path_factory.mktemp("eventweights")
    nano = with_correction_branches(toy_files["TT"], directory / "TT.root")
    with uproot.open(nano) as fin:
        true_interactions = fin["Events"]["Pileup_nTrueInt"].array(library="np")
    files = cf.write_all(directory / "corrections", true_interactions)
    settings = correction_settings(default_config, files)
    settings["variations"].update(tau_es=None, jet_es=None, met_unclustered=False)
    run_preselection(
        "TT",
        default_samples["TT"],
        [str(nano)],
        settings,
        directory / "skims",
        chunksize=1500,
        dask={"mode": "none"},
    )
    return {"nano": nano, "files": files, "settings": settings, "skims": directory / "skims"}


def _evaluate(path, name, *args):
    return correctionlib.CorrectionSet.from_file(str(path))[name].evaluate(*args)


def test_skim_scale_factors_match_direct_evaluation(corrected):
    # catches a correction given the wrong object or quantity (eta for abseta, the muon's pT for
    # the tau_h), the wrong systematic key, or rows misaligned with their events
    skim = read_tree(corrected["skims"] / "nominal.root")
    files = corrected["files"]
    assert len(skim["event"]) > 200
    abseta, pt = np.abs(skim["eta_1"].astype(np.float64)), skim["pt_1"].astype(np.float64)
    for name in ("muon_id", "muon_iso", "muon_trigger"):
        for column, syst in (("", "nominal"), ("_up", "systup"), ("_down", "systdown")):
            expected = _evaluate(files["muon"], cf.UL18[name], abseta, pt, syst)
            np.testing.assert_allclose(skim[f"w_{name}{column}"], expected, rtol=1e-6)
    for column, syst in (("", "nom"), ("_up", "up"), ("_down", "down")):
        expected = _evaluate(
            files["tau"],
            "DeepTau2018v2p5VSjet",
            skim["pt_2"].astype(np.float64),
            skim["dm_2"],
            skim["gen_match_2"],
            "Medium",
            "VVLoose",
            syst,
            "dm",
        )
        np.testing.assert_allclose(skim[f"w_tau_id{column}"], expected, rtol=1e-6)
    with uproot.open(corrected["nano"]) as fin:
        events = fin["Events"].arrays(["event", "Pileup_nTrueInt"], library="np")
    position = {event: i for i, event in enumerate(events["event"])}
    true_interactions = events["Pileup_nTrueInt"][[position[e] for e in skim["event"]]]
    for column, syst in (("", "nominal"), ("_up", "up"), ("_down", "down")):
        expected = _evaluate(files["pileup"], cf.UL18["pileup"], true_interactions, syst)
        np.testing.assert_allclose(skim[f"w_pileup{column}"], expected, rtol=1e-6)


def test_btag_weight_by_hand(corrected):
    # catches the untagged factor (1 - SF eff)/(1 - eff) replaced by SF, light jets evaluated
    # with the b/c correction, or jets of one event multiplied into another
    weights = EventCorrections(corrected["settings"]["weights"], simulation=True)
    jets = ak.Array(
        [
            [
                {"pt": 60.0, "eta": 0.5, "hadronFlavour": 5, "btagged": True},
                {"pt": 30.0, "eta": -1.0, "hadronFlavour": 0, "btagged": False},
            ],
            [],
            [{"pt": 150.0, "eta": 2.0, "hadronFlavour": 4, "btagged": False}],
        ]
    )
    wp = 1  # "M"
    sf_b = cf.BTAG_SF[5][1] - 0.01 * wp
    sf_light = cf.BTAG_SF[0][0] - 0.01 * wp
    eff_light = cf.BTAG_EFFICIENCY[0][0]
    sf_c, eff_c = cf.BTAG_SF[4][2] - 0.01 * wp, cf.BTAG_EFFICIENCY[4][2]
    expected = [
        sf_b * (1 - sf_light * eff_light) / (1 - eff_light),
        1.0,
        (1 - sf_c * eff_c) / (1 - eff_c),
    ]
    np.testing.assert_allclose(weights._btag_weight(jets, "central", "central"), expected)
    up_b = sf_b + cf.BTAG_SYST[5]
    up_light = sf_light + cf.BTAG_SYST[0]
    expected_up = up_b * (1 - up_light * eff_light) / (1 - eff_light)
    np.testing.assert_allclose(weights._btag_weight(jets, "up", "up")[0], expected_up)


def test_btag_uncertainty_sources_and_b_jet_only_scale_factors(corrected):
    """The Run-3 layout: a b/c correction of b jets only whose uncertainty is split into
    sources. Each source varies the b-jet scale factors alone (``btag_<source>``), the light
    scale factor has its own variation (``btag_light``), a c jet gets SF 1 with any efficiency;
    the skim columns are those the friend trees read. Catches a source evaluated on light jets,
    a c jet sent to the b-only correction (correctionlib stops), or a column not written."""
    settings = corrected["settings"]
    btag = {**settings["weights"]["corrections"]["btag"], **cf.RUN3_BTAG,
            "sources": list(cf.BTAG_SOURCES), "heavy_flavours": [5]}  # fmt: skip
    weights_config = {**settings["weights"], "corrections": {"btag": btag}}
    weights = EventCorrections(weights_config, simulation=True)
    jets = ak.Array([[
        {"pt": 60.0, "eta": 0.5, "hadronFlavour": 5, "btagged": True},
        {"pt": 30.0, "eta": -1.0, "hadronFlavour": 0, "btagged": False},
        {"pt": 150.0, "eta": 2.0, "hadronFlavour": 4, "btagged": True},
    ]])  # fmt: skip
    columns = weights.columns({"btag_jets": jets})
    assert sorted(columns) == sorted(correction_columns(weights_config))
    assert {"weight_btag_jes_up", "weight_btag_light_down"} <= set(
        weight_variation_columns(weights_config)
    )
    sf_b, sf_light = cf.BTAG_SF[5][1] - 0.01, cf.BTAG_SF[0][0] - 0.01  # working point M
    eff_light = cf.BTAG_EFFICIENCY[0][0]

    def weight(b, light):  # the c jet: SF 1, tagged or not
        return b * (1 - light * eff_light) / (1 - eff_light)

    shift = cf.BTAG_SOURCES["jes"] * cf.BTAG_SYST[5]
    np.testing.assert_allclose(columns["w_btag"], [weight(sf_b, sf_light)])
    np.testing.assert_allclose(columns["w_btag_jes_up"], [weight(sf_b + shift, sf_light)])
    np.testing.assert_allclose(columns["w_btag_jes_down"], [weight(sf_b - shift, sf_light)])
    light_up = sf_light + cf.BTAG_SYST[0]
    np.testing.assert_allclose(columns["w_btag_light_up"], [weight(sf_b, light_up)])


def test_friend_weights_carry_the_corrections(corrected, default_config, default_samples):
    # catches a correction left out of the nominal weight or its up/down not reaching the
    # friend trees (and so the histograms and the workspace)
    settings = {"lumi": 1000.0, "weights": corrected["settings"]["weights"], "folds": 2}
    skim_path = corrected["skims"] / "nominal.root"
    cutflow = corrected["skims"] / "nominal.cutflow.json"
    columns = make_friend(
        skim_path,
        cutflow,
        corrected["skims"] / "friend.root",
        "TT",
        default_samples["TT"],
        settings,
    )
    skim = read_tree(skim_path)
    sumw = read_json(cutflow)["sumw"]["genEventSumw"]
    names = ("pileup", "muon_id", "muon_iso", "muon_trigger", "tau_id", "btag")
    product = np.prod([skim[f"w_{n}"].astype(np.float64) for n in names], axis=0)
    norm = default_samples["TT"]["xsec"] * 1000.0 / sumw
    np.testing.assert_allclose(columns["weight"], skim["w_gen"] * norm * product, rtol=1e-6)
    for name in names:
        assert f"weight_{name}_up" in weight_variation_columns(settings["weights"])
        ratio = skim[f"w_{name}_up"].astype(np.float64) / skim[f"w_{name}"]
        np.testing.assert_allclose(
            columns[f"weight_{name}_up"], columns["weight"] * ratio, rtol=1e-5
        )


def test_correction_and_branch_variation_of_one_name_is_an_error(corrected):
    # catches two sources silently writing the same weight columns
    weights = {**corrected["settings"]["weights"]}
    weights["variations"] = {
        **weights["variations"],
        "pileup": {"nominal": "puWeight", "up": "puWeightUp", "down": "puWeightDown"},
    }
    with pytest.raises(AnalysisError, match=r"weights\.corrections\.pileup.*variations\.pileup"):
        check_weights(weights)


def test_preselection_with_a_missing_correction_file_is_one_line(
    corrected, default_config, default_samples, tmp_path
):
    # catches a missing file reaching the user as a traceback from inside a dask chunk
    settings = correction_settings(default_config, corrected["files"])
    settings["weights"]["corrections"]["muon_iso"]["file"] = str(tmp_path / "muon_Z.json")
    with pytest.raises(AnalysisError, match=r"fix weights\.corrections\.muon_iso\.file") as err:
        run_preselection(
            "TT",
            default_samples["TT"],
            [str(corrected["nano"])],
            settings,
            tmp_path / "out",
            chunksize=1500,
            dask={"mode": "none"},
        )
    assert "\n" not in str(err.value)
