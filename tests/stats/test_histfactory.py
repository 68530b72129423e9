"""HistFactory XML export: pyhf's readxml gives back an equivalent workspace, from anywhere the
export directory is moved to; a failed export keeps the previous one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats import histfactory
from tests.conftest import DATA

WORKSPACES = DATA / "workspaces"


def samples_of(workspace: pyhf.Workspace) -> dict:
    """{(channel, sample): (nominal yields, sorted (modifier, type))}."""
    return {
        (channel["name"], sample["name"]): (
            sample["data"],
            sorted((m["name"], m["type"]) for m in sample["modifiers"]),
        )
        for channel in workspace["channels"]
        for sample in channel["samples"]
    }


@pytest.mark.parametrize("name", ["toy_analysis", "simple", "large", "multichannel"])
def test_xml_round_trips_through_readxml(tmp_path, name):
    """Same channels, samples, yields, modifiers, observations and expected data after
    json -> XML -> json. Bugs caught: histograms written under other names than the XML says,
    paths pointing into the temporary build directory (moved below), a lost channel."""
    original = pyhf.Workspace(json.loads((WORKSPACES / f"{name}.json").read_text()))
    top = histfactory.write_xml(original, tmp_path / "first" / "xml")
    assert top == tmp_path / "first" / "xml" / "FitConfig.xml"
    xmls = sorted((tmp_path / "first" / "xml").rglob("*.xml"))
    # the top file and one per channel: the loop below checks files that exist
    assert len(xmls) == 1 + len(original.channels) and top in xmls
    for xml in xmls:
        assert str(tmp_path) not in xml.read_text(), f"{xml.name}: an absolute path"
    shutil.move(tmp_path / "first" / "xml", tmp_path / "moved")
    back = histfactory.read_xml(tmp_path / "moved")
    assert sorted(back.channels) == sorted(original.channels)
    assert back.get_measurement()["config"]["poi"] == original.get_measurement()["config"]["poi"]
    before, after = samples_of(original), samples_of(back)
    assert sorted(after) == sorted(before)
    for key, (data, modifiers) in before.items():
        np.testing.assert_allclose(after[key][0], data, rtol=1e-12, err_msg=str(key))
        assert after[key][1] == modifiers, key
    for channel in original.channels:
        np.testing.assert_allclose(back.observations[channel], original.observations[channel])
    models = [workspace.model() for workspace in (original, back)]
    assert sorted(models[0].config.par_order) == sorted(models[1].config.par_order)
    expected = [
        dict(zip(m.config.channels, np.split(m.expected_data(m.config.suggested_init(), False),
                                             np.cumsum(list(m.config.channel_nbins.values()))[:-1]),
                 strict=True))
        for m in models
    ]  # fmt: skip
    for channel in original.channels:
        np.testing.assert_allclose(expected[1][channel], expected[0][channel], rtol=1e-9)


def test_a_failed_export_keeps_the_previous_one(tmp_path, monkeypatch):
    """An export that fails halfway (here: pyhf's writer, after writing a file) leaves the previous
    export as it was and no temporary directory. The bug: a half-written directory in its place."""
    output = tmp_path / "xml"
    spec = json.loads((WORKSPACES / "simple.json").read_text())
    histfactory.write_xml(spec, output)
    before = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}

    def broken(*args):
        Path("config/FitConfig_SR.xml").write_text("<Channel")  # in the build directory
        raise RuntimeError("disk full")

    monkeypatch.setattr(histfactory.pyhf.writexml, "writexml", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        histfactory.write_xml(spec, output)
    after = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["xml"], "no temporary directory left"
    with pytest.raises(AnalysisError, match="not a valid pyhf workspace"):
        histfactory.write_xml({"channels": []}, output)
