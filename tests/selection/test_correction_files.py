"""The generated correction files have the official layouts (names, inputs, types, systematic
keys) and the values their tables say, and a missing or misnamed correction is one clear line."""

from __future__ import annotations

import correctionlib
import numpy as np
import pytest

from analysis.core.errors import AnalysisError
from analysis.selection import correction_files as cf
from analysis.selection.corrections import SchemaCorrection


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    values = np.random.default_rng(3).poisson(30, 20000).astype(np.float64)
    return cf.write_all(tmp_path_factory.mktemp("corrections"), values), values


def _inputs(path, name):
    correction = correctionlib.CorrectionSet.from_file(str(path))[name]
    return [(var.name, var.type) for var in correction.inputs]


def test_files_have_the_official_inputs(files):
    # catches a generator drifting from the POG layouts (renamed or reordered inputs), which
    # would let code pass the tests that fails on the official files
    paths, _ = files
    assert _inputs(paths["pileup"], "Collisions18_UltraLegacy_goldenJSON") == [
        ("NumTrueInteractions", "real"),
        ("weights", "string"),
    ]
    assert _inputs(paths["muon"], "NUM_TightID_DEN_TrackerMuons") == [
        ("abseta", "real"),
        ("pt", "real"),
        ("scale_factors", "string"),
    ]
    assert _inputs(paths["tau"], "DeepTau2018v2p5VSjet") == [
        ("pt", "real"),
        ("dm", "int"),
        ("genmatch", "int"),
        ("wp", "string"),
        ("wp_VSe", "string"),
        ("syst", "string"),
        ("flag", "string"),
    ]
    assert _inputs(paths["btag"], "deepJet_mujets") == [
        ("systematic", "string"),
        ("working_point", "string"),
        ("flavor", "int"),
        ("abseta", "real"),
        ("pt", "real"),
    ]
    assert _inputs(paths["jme"], "Summer19UL18_JRV2_MC_PtResolution_AK4PFchs") == [
        ("JetEta", "real"),
        ("JetPt", "real"),
        ("Rho", "real"),
    ]
    assert _inputs(paths["jme"], "Summer19UL18_V5_MC_Absolute_AK4PFchs") == [
        ("JetEta", "real"),
        ("JetPt", "real"),
    ]


def test_pileup_weights_average_to_one_on_their_simulation(files):
    # catches a pileup profile ratio taken the wrong way round or normalised over other bins
    paths, values = files
    correction = SchemaCorrection(
        {"file": str(paths["pileup"]), "correction": "Collisions18_UltraLegacy_goldenJSON"},
        "weights.corrections.pileup",
        ["NumTrueInteractions"],
    )
    nominal = correction.evaluate({"NumTrueInteractions": values}, "nominal")
    assert nominal.mean() == pytest.approx(1.0, abs=1e-9)
    assert nominal.std() > 0.05  # a real reweighting, not all ones
    up = correction.evaluate({"NumTrueInteractions": values}, "up")
    # more pileup in the "up" data: high-pileup events gain weight relative to the nominal
    high = values > 40
    assert up[high].mean() > nominal[high].mean()


def test_muon_values_by_hand(files):
    # catches abseta/pt swapped, the wrong bin or the wrong systematic key
    paths, _ = files
    muon = SchemaCorrection(
        {
            "file": str(paths["muon"]),
            "correction": "NUM_IsoMu24_DEN_CutBasedIdTight_and_PFIsoTight",
        },
        "k",
        ["abseta", "pt"],
    )
    quantities = {"abseta": np.array([0.5, 2.2, 1.0]), "pt": np.array([33.0, 200.0, 22.0])}
    # scale 0.97; bins (eta 0, pt 3), (eta 3, pt 6 clamped), (eta 1, pt 1)
    expected = np.array([0.97 - 0.006, 0.97 - 0.03 - 0.012, 0.97 - 0.01 - 0.002])
    np.testing.assert_allclose(muon.evaluate(quantities, "nominal"), expected)
    np.testing.assert_allclose(muon.evaluate(quantities, "systdown"), expected - cf.MUON_SYST)


def test_legacy_muon_layout_needs_only_constants(tmp_path):
    # catches inputs taken by position: the older UL layout has `year` first and `ValType`
    path = tmp_path / "muon.json"
    cf.write_set(path, [cf.muon_correction("NUM_TightID_DEN_TrackerMuons", 0.99, "legacy")])
    spec = {
        "file": str(path),
        "correction": "NUM_TightID_DEN_TrackerMuons",
        "constants": {"year": "2018_UL"},
    }
    muon = SchemaCorrection(spec, "k", ["abseta", "pt"])
    assert muon.systematic_input == "ValType"
    value = muon.evaluate({"abseta": np.array([0.5]), "pt": np.array([33.0])}, "sf")
    np.testing.assert_allclose(value, [0.99 - 0.006])


def test_tau_values_by_hand(files):
    # catches genmatch ignored (fake tau_h must get 1) or the wp/flag constants not applied
    paths, _ = files
    spec = {
        "file": str(paths["tau"]),
        "correction": "DeepTau2018v2p5VSjet",
        "constants": {"wp": "Tight", "wp_VSe": "Tight", "flag": "dm"},
    }
    tau = SchemaCorrection(spec, "k", ["pt", "dm", "genmatch"])
    quantities = {
        "pt": np.array([30.0, 30.0, 50.0]),
        "dm": np.array([1, 1, 10]),
        "genmatch": np.array([5, 0, 5]),
    }
    offset = 0.01 * 2 - 0.005 * 1  # Tight is the third VSjet point, Tight the second VSe one
    expected = np.array([0.92 + offset, 1.0, 0.90 + offset])
    np.testing.assert_allclose(tau.evaluate(quantities, "nom"), expected)
    up = expected + np.array([cf.TAU_SYST, 0.0, cf.TAU_SYST])
    np.testing.assert_allclose(tau.evaluate(quantities, "up"), up)


@pytest.mark.parametrize(
    "spec, key, match",
    [
        (
            {"file": "missing.json", "correction": "x"},
            "weights.corrections.pileup",
            r"missing\.json: correction file not found; fix weights\.corrections\.pileup\.file",
        ),
        (
            {"file": None, "correction": "x"},
            "weights.corrections.pileup",
            r"key 'weights\.corrections\.pileup\.file' is not set",
        ),
        (
            {"correction": "Collisions18_UL"},
            "weights.corrections.pileup",
            r"has no correction 'Collisions18_UL'.*fix weights\.corrections\.pileup\.correction",
        ),
        (
            {"correction": "DeepTau2018v2p5VSjet"},
            "weights.corrections.tau_id",
            r"input\(s\) \['wp', 'wp_VSe', 'syst', 'flag'\].*corrections\.tau_id\.constants",
        ),
    ],
)
def test_bad_correction_config_is_one_line(files, spec, key, match):
    # catches a traceback or a message that does not name the config key to fix
    paths, _ = files
    file = paths["tau"] if "DeepTau" in spec["correction"] else paths["pileup"]
    spec = {"file": str(file), **spec}
    with pytest.raises(AnalysisError, match=match) as err:
        SchemaCorrection(spec, key, ["NumTrueInteractions", "pt", "dm", "genmatch"])
    assert "\n" not in str(err.value)


def test_unknown_systematic_key_is_one_line(files):
    # catches correctionlib's bare "map::at" reaching the user
    paths, _ = files
    spec = {"file": str(paths["pileup"]), "correction": "Collisions18_UltraLegacy_goldenJSON"}
    pileup = SchemaCorrection(spec, "weights.corrections.pileup", ["NumTrueInteractions"])
    with pytest.raises(AnalysisError, match=r"weights\.corrections\.pileup\.systematics"):
        pileup.evaluate({"NumTrueInteractions": np.array([30.0])}, "nom")
