"""Event filters of the preselection: the certified-luminosity mask of collision data and the MET
filters, each a cutflow step only when configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_tree
from analysis.selection import toydata
from analysis.selection.preselect import run_preselection
from analysis.selection.skim import CUTS
from tests.conftest import DATA, preselect_settings, toy_settings

GOLDEN = DATA / "certified_lumi_toy.json"


def _certified(runs: np.ndarray, lumis: np.ndarray) -> np.ndarray:
    """Whether each (run, lumi) is certified by GOLDEN: a plain loop, independent of coffea."""
    ranges = {int(run): spans for run, spans in read_json(GOLDEN).items()}
    return np.array(
        [
            any(first <= lumi <= last for first, last in ranges.get(int(run), []))
            for run, lumi in zip(runs, lumis, strict=True)
        ]
    )


def _preselect(name, sample, path, settings, output: Path) -> dict:
    return run_preselection(
        name, sample, [str(path)], settings, output, chunksize=700, dask={"mode": "none"}
    )


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory, default_config, default_samples) -> Path:
    """Toy pseudo-data for a small luminosity (about 1500 events over eight runs)."""
    settings = toy_settings(default_config, default_samples, events=1000)
    settings["lumi"] = 40.0
    path = tmp_path_factory.mktemp("data") / "data.root"
    toydata.generate_sample("data", settings, path)
    return path


def test_certified_lumi_keeps_what_an_independent_loop_keeps(
    tmp_path, toy_data, default_config, default_samples
):
    # catches a mask on the wrong branch, inclusive/exclusive range ends, or the step missing
    settings = preselect_settings(default_config)
    plain = _preselect("data", default_samples["data"], toy_data, settings, tmp_path / "plain")
    settings["selection"]["certified_lumi"]["file"] = str(GOLDEN)
    masked = _preselect("data", default_samples["data"], toy_data, settings, tmp_path / "masked")
    with uproot.open(toy_data) as fin:
        keys = fin["Events"].arrays(["run", "luminosityBlock"], library="np")
    certified = _certified(keys["run"], keys["luminosityBlock"])
    assert 0 < certified.sum() < len(certified)
    cuts = masked["nominal"]["cuts"]
    assert [cut["name"] for cut in cuts] == [CUTS[0], "certified_lumi", *CUTS[1:]]
    assert cuts[1]["events"] == certified.sum()
    assert [cut["name"] for cut in plain["nominal"]["cuts"]] == list(CUTS)
    before = read_tree(tmp_path / "plain" / "nominal.root")
    after = read_tree(tmp_path / "masked" / "nominal.root")
    kept = _certified(before["run"], before["luminosityBlock"])
    np.testing.assert_array_equal(after["event"], before["event"][kept])
    assert cuts[-1]["events"] == kept.sum()


def test_simulation_passes_the_certified_lumi_step_whole(
    tmp_path, toy_files, default_config, default_samples
):
    # catches a mask applied to simulation (run 1 is not certified) or a step only data has,
    # which would make the cutflows of data and simulation disagree
    settings = preselect_settings(default_config)
    settings["selection"]["certified_lumi"] = {"file": str(GOLDEN), "required": True}
    cutflows = _preselect("ZTT", default_samples["ZTT"], toy_files["ZTT"], settings, tmp_path)
    cuts = cutflows["nominal"]["cuts"]
    assert cuts[1]["name"] == "certified_lumi"
    assert cuts[1]["events"] == cuts[0]["events"] and cuts[1]["weighted"] == cuts[0]["weighted"]


def test_data_without_required_certified_lumi_is_one_clear_error(
    tmp_path, toy_data, default_config, default_samples
):
    # catches data silently preselected without the mask an era asks for
    settings = preselect_settings(default_config)
    settings["selection"]["certified_lumi"]["required"] = True
    with pytest.raises(AnalysisError) as err:
        _preselect("data", default_samples["data"], toy_data, settings, tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "'data'" in message and "selection.certified_lumi.file" in message
    assert not list(tmp_path.glob("*.root")) and not list(tmp_path.glob("*.json"))


def test_missing_certified_lumi_file_names_itself(
    tmp_path, toy_data, default_config, default_samples
):
    # catches a raw FileNotFoundError traceback from coffea
    settings = preselect_settings(default_config)
    settings["selection"]["certified_lumi"]["file"] = str(tmp_path / "nope.json")
    with pytest.raises(AnalysisError, match=r"certified_lumi.file: .*nope\.json not found"):
        _preselect("data", default_samples["data"], toy_data, settings, tmp_path / "out")


def test_met_filters_are_a_cutflow_step(tmp_path, monkeypatch, default_config, default_samples):
    # catches filters that are not applied, applied as OR, or recorded outside the cutflow
    def with_flags(columns, layout):
        event = columns["event"]
        return {
            **columns,
            "Flag_goodVertices": event % 7 != 0,
            "Flag_eeBadScFilter": event % 11 != 0,
        }

    monkeypatch.setattr(toydata, "in_layout", with_flags)
    settings = toy_settings(default_config, default_samples, events=3000)
    path = tmp_path / "ZTT.root"
    toydata.generate_sample("ZTT", settings, path)
    selection = preselect_settings(default_config)
    plain = _preselect("ZTT", default_samples["ZTT"], path, selection, tmp_path / "plain")
    selection["selection"]["met_filters"] = ["Flag_goodVertices", "Flag_eeBadScFilter"]
    filtered = _preselect("ZTT", default_samples["ZTT"], path, selection, tmp_path / "filtered")
    cuts = filtered["nominal"]["cuts"]
    assert [cut["name"] for cut in cuts] == [CUTS[0], "met_filters", *CUTS[1:]]
    with uproot.open(path) as fin:
        events = fin["Events"]["event"].array(library="np")
    passing = (events % 7 != 0) & (events % 11 != 0)
    assert cuts[1]["events"] == passing.sum()
    for variation in ("nominal", "tau_es_up"):
        before = read_tree(tmp_path / "plain" / f"{variation}.root")["event"]
        after = read_tree(tmp_path / "filtered" / f"{variation}.root")["event"]
        np.testing.assert_array_equal(after, before[(before % 7 != 0) & (before % 11 != 0)])
    assert plain["nominal"]["cuts"][-1]["events"] > cuts[-1]["events"]


def test_missing_met_filter_branch_names_the_config_key(
    tmp_path, toy_files, default_config, default_samples
):
    # catches a KeyError deep inside a dask task instead of the early one-line check
    settings = preselect_settings(default_config)
    settings["selection"]["met_filters"] = ["Flag_goodVertices"]
    with pytest.raises(AnalysisError, match=r"no branch 'Flag_\w+'.*selection.met_filters"):
        _preselect("ZTT", default_samples["ZTT"], toy_files["ZTT"], settings, tmp_path)
