"""Workspaces, patches and model settings (analysis/stats/model.py): patches applied, and every
mistake refused in one line naming the key."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats import model as model_utils
from tests.stats.references import WORKSPACES, load


def test_patchset_entry_is_applied():
    plain = load("simple")
    patched = model_utils.setup_from_files(
        WORKSPACES / "simple.json",
        {"patch": str(WORKSPACES / "patchset.json"), "patch_name": "signal_high"},
    )
    pars = plain.model.config.suggested_init()
    signal = np.asarray(patched.model.expected_actualdata(pars)) - np.asarray(
        plain.model.expected_actualdata(pars)
    )
    # the patch triples the signal: the difference is twice the original signal
    assert signal == pytest.approx(2.0 * np.array([2.0, 5.0, 9.0, 4.0]))
    assert patched.digest != plain.digest


def test_patch_errors_are_one_line(tmp_path):
    patchset = str(WORKSPACES / "patchset.json")
    with pytest.raises(AnalysisError, match="set inference.patch_name"):
        model_utils.setup_from_files(WORKSPACES / "simple.json", {"patch": patchset})
    with pytest.raises(AnalysisError, match="no patch named 'nope'"):
        model_utils.setup_from_files(
            WORKSPACES / "simple.json", {"patch": patchset, "patch_name": "nope"}
        )
    with pytest.raises(AnalysisError, match="another background-only workspace"):
        model_utils.setup_from_files(
            WORKSPACES / "multichannel.json", {"patch": patchset, "patch_name": "signal_low"}
        )
    plain_patch = tmp_path / "patch.json"
    plain_patch.write_text(json.dumps([{"op": "remove", "path": "/channels/5"}]))
    with pytest.raises(AnalysisError, match="does not apply"):
        model_utils.setup_from_files(WORKSPACES / "simple.json", {"patch": str(plain_patch)})


def test_model_errors_name_the_key(tmp_path):
    with pytest.raises(AnalysisError, match="no parameter 'mu_X' to use as POI"):
        load("simple", pois=["mu_X"])
    with pytest.raises(AnalysisError, match="several bins and cannot be a POI"):
        load("multichannel", pois=["staterror_SR"])
    with pytest.raises(AnalysisError, match="no measurement 'other'"):
        load("simple", measurement="other")
    not_a_workspace = tmp_path / "ws.json"
    not_a_workspace.write_text(json.dumps({"hello": 1}))
    with pytest.raises(AnalysisError, match="not a pyhf workspace"):
        model_utils.setup_from_files(not_a_workspace, {})
    spec = copy.deepcopy(json.loads((WORKSPACES / "multichannel.json").read_text()))
    spec["observations"] = spec["observations"][:1]
    (tmp_path / "nodata.json").write_text(json.dumps(spec))
    with pytest.raises(AnalysisError, match="inference.asimov"):
        model_utils.setup_from_files(tmp_path / "nodata.json", {})
    assert model_utils.setup_from_files(tmp_path / "nodata.json", {"asimov": True}).asimov
