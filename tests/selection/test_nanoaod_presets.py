"""NanoAOD version presets (config/nanoaod/) and the toy's v15 layout: the same events written in
the v9 and the v15 layout and preselected through the matching preset give the same skims."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import uproot

from analysis.core.config import (
    correction_columns,
    load_yaml,
    shape_variations,
    weight_variation_columns,
)
from analysis.core.eras import layered
from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_tree
from analysis.selection import correction_files as cf
from analysis.selection.friends import friend_columns
from analysis.selection.preselect import run_preselection
from analysis.selection.toydata import generate_sample
from analysis.selection.workingpoints import tau_id_cuts, working_point_cut
from tests.conftest import (
    REPO,
    correction_files_overlay,
    preselect_settings,
    toy_settings,
    with_correction_branches,
)

PRESETS = REPO / "config" / "nanoaod"


def _with_preset(config: dict, version: str) -> dict:
    """Preselection settings of the config with ``config/nanoaod/<version>.yaml`` on top."""
    settings = preselect_settings(config)
    settings["branches"] = load_yaml(PRESETS / f"{version}.yaml")["branches"]
    return settings


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, default_config, default_samples) -> dict[str, Path]:
    """The same ZTT toy events (same seed) in the v9 and in the v15 layout."""
    directory = tmp_path_factory.mktemp("layouts")
    files = {}
    for version in ("v9", "v15"):
        settings = toy_settings(default_config, default_samples, events=3000)
        settings["toydata"] = {**settings["toydata"], "nanoaod": version}
        files[version] = directory / f"ZTT_{version}.root"
        generate_sample("ZTT", settings, files[version])
    return files


def test_v15_layout_has_the_v15_branches(layouts):
    # catches a layout that keeps v9 branches (the preset would then never be exercised)
    with uproot.open(layouts["v15"]) as fin:
        keys = set(fin["Events"].keys())
        tau_id = fin["Events"]["Tau_idDeepTau2018v2p5VSjet"].array(library="np")
    assert "Jet_jetId" not in keys and "MET_pt" not in keys
    assert "Jet_btagUParTAK4B" in keys and "Jet_btagDeepFlavB" not in keys
    assert "Tau_idDeepTau2017v2p1VSjet" not in keys
    assert {"PuppiMET_ptUnclusteredUp", "PuppiMET_phiUnclusteredDown"} <= keys
    assert set(np.unique(np.concatenate(tau_id))) <= set(range(9))  # WP indices, not bitmasks


def test_v15_layout_through_v15_preset_selects_the_same_events(
    tmp_path, layouts, default_config, default_samples
):
    # catches an off-by-one working-point translation (wp_index Medium must be 5, not 4), a
    # mishandled PuppiMET unclustered form, or a v15 preset naming a branch the layout lacks
    outputs = {}
    for version in ("v9", "v15"):
        settings = _with_preset(default_config, version)
        settings["selection"]["jet"]["id_min"] = 0  # v15 has no jet ID: count the same jets
        outputs[version] = tmp_path / version
        run_preselection(
            "ZTT", default_samples["ZTT"], [str(layouts[version])], settings, outputs[version],
            chunksize=1000, dask={"mode": "none"},
        )  # fmt: skip
    for variation in ("nominal", "tau_es_up", "jet_es_down"):
        v9 = read_tree(outputs["v9"] / f"{variation}.root")
        v15 = read_tree(outputs["v15"] / f"{variation}.root")
        assert len(v9["event"]) > 100
        for column in v9:
            np.testing.assert_array_equal(v15[column], v9[column], err_msg=column)
    for variation in ("met_uncl_up", "met_uncl_down"):
        v9 = read_tree(outputs["v9"] / f"{variation}.root")
        v15 = read_tree(outputs["v15"] / f"{variation}.root")
        np.testing.assert_array_equal(v15["event"], v9["event"])
        np.testing.assert_allclose(v15["met"], v9["met"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(v15["mt_1"], v9["mt_1"], rtol=1e-4, atol=1e-2)


def test_presets_name_every_branch_key(default_config):
    # catches a preset that omits a key, which would silently keep the toy's v9 default
    for version in ("v9", "v12", "v15"):
        preset = load_yaml(PRESETS / f"{version}.yaml")["branches"]
        assert set(preset) == set(default_config["branches"]), version


@pytest.mark.parametrize(
    "name, bit",
    [("VVVLoose", 0), ("Loose", 3), ("Medium", 4), ("VVTight", 7)],
)
def test_bitmask_and_wp_index_agree_on_cumulative_working_points(default_config, name, bit):
    # catches a translation that compares a bitmask with >= of a WP index or shifts the index
    spec = default_config["branches"]["working_points"]["tau_id"]
    scores = np.arange(9)  # passes the first `score` working points
    bitmask = np.array([(1 << s) - 1 for s in scores])
    as_bits = working_point_cut("Tau_id", spec, name, "k")
    as_index = working_point_cut("Tau_id", {**spec, "encoding": "wp_index"}, name, "k")
    expected = scores > bit
    np.testing.assert_array_equal(as_bits.passes({"id": bitmask}), expected)
    np.testing.assert_array_equal(as_index.passes({"id": scores}), expected)


def test_integer_threshold_is_a_raw_minimum(default_config):
    # catches an integer threshold read as a working-point position
    cut = working_point_cut("Tau_id", {"encoding": "wp_index", "names": ["A"]}, 16, "k")
    np.testing.assert_array_equal(cut.passes({"id": np.array([15, 16, 17])}), [False, True, True])


def test_unknown_working_point_names_config_key(default_config):
    # catches a silent fallback for a misspelt working point
    branches = copy.deepcopy(default_config["branches"])
    with pytest.raises(AnalysisError, match=r"selection\.tau\.id_min: 'Medum'.*VVVLoose") as err:
        tau_id_cuts(branches, {"id_min": "Medum", "antimu_min": "Tight"})
    assert "\n" not in str(err.value)


def test_the_2024_era_runs_on_v15_with_files_of_its_correction_names(
    tmp_path, layouts, default_config, default_samples
):
    """config/eras/2024.yaml on the v15 preset, each correction file it leaves to the user set to
    a file generated in the Run-3 layouts under the era's correction names: the preselection and
    friend trees run, with every correction's column, the b-tagging weight's uncertainty sources,
    JER and the JES source as shape variations. Catches a name or layout of the era file that the
    code cannot evaluate (a Run-3 input such as the energy scale's working points, a b-jet-only
    b-tagging correction meeting a c jet), or an era variation that does not reach the friends."""
    nano = with_correction_branches(layouts["v15"], tmp_path / "ZTT.root")
    with uproot.open(nano) as fin:
        true_interactions = fin["Events"]["Pileup_nTrueInt"].array(library="np")
    files = cf.write_all(tmp_path / "corrections", true_interactions, cf.RUN3_2024)
    config = default_config
    for overlay in (load_yaml(PRESETS / "v15.yaml"), load_yaml(REPO / "config/eras/2024.yaml"),
                    correction_files_overlay(files)):  # fmt: skip
        config = layered(config, overlay)
    config["weights"]["corrections"]["btag"]["efficiency"]["file"] = str(files["btag_efficiency"])
    config["selection"]["met_filters"] = []  # the toy has no Flag_* branches (test_eventfilters)
    settings = preselect_settings(config)
    flow = run_preselection("ZTT", default_samples["ZTT"], [str(nano)], settings,
                            tmp_path / "skims", chunksize=3000)  # fmt: skip
    assert set(flow) == {"nominal", *shape_variations(settings["variations"])}
    assert {"jer_up", "jes_Total_down", "tau_es_up", "met_uncl_down"} <= set(flow)
    skim = read_tree(tmp_path / "skims" / "nominal.root")
    assert len(skim["event"]) > 100
    assert set(correction_columns(settings["weights"])) <= set(skim)
    cutflow = read_json(tmp_path / "skims" / "nominal.cutflow.json")
    columns = friend_columns(
        skim,
        cutflow,
        "ZTT",
        default_samples["ZTT"],
        {"lumi": config["lumi"], "weights": settings["weights"], "folds": 2},
    )
    variations = weight_variation_columns(settings["weights"])
    assert {"weight_btag_statistic_up", "weight_btag_light_down", "weight_pileup_up"} <= set(
        variations
    )
    assert all(np.isfinite(columns[name]).all() for name in ["weight", *variations])
    assert not np.allclose(columns["weight_btag_jes_up"], columns["weight"])
