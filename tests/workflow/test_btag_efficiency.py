"""The workflow measures the b-tagging efficiency map (rule btag_efficiency) on real NanoAOD
before the preselection that weights events with it (weights.corrections.btag.efficiency.file:
measured)."""

from __future__ import annotations

import correctionlib
import numpy as np
import pytest
import yaml

from analysis.core.io import read_tree
from analysis.selection import correction_files as cf
from tests.conftest import REPO
from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.slow


def test_measured_map_is_made_before_the_preselection_that_reads_it(tmp_path):
    # catches a preselection scheduled before (or without) the map it reads, the map's path not
    # reaching the job, or a measured map that the b-tagging weight cannot evaluate
    files = cf.write_all(tmp_path / "corrections", np.full(10, 30.0))
    results = tmp_path / "results"
    overlay = {
        "results": str(results),
        # the 2015 file has no DeepJet score: CSVv2 at its medium working point
        "branches": {"btag": "Jet_btagCSVV2"},
        "selection": {"bjet": {"pt": 20.0, "eta": 2.4, "wp": 0.8484}},
        "weights": {"corrections": {"btag": {
            "file": str(files["btag"]), "correction": "deepJet_mujets",
            "light_correction": "deepJet_incl", "working_point": "M",
            "systematics": ["central", "up", "down"],
            "efficiency": {"file": "measured", "correction": "btag_efficiency"},
        }}},
    }  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(overlay))
    args = ("--configfile", str(REPO / "tests/data/real_nanoaod_config.yaml"), str(config))
    planned = snakemake("-n", "preselect", *args).stdout
    assert planned.count("rule btag_efficiency:") == 1, planned
    snakemake("preselect", *args)
    measured = results / "corrections/btag_efficiency_analysis.json"
    correction = correctionlib.CorrectionSet.from_file(str(measured))["btag_efficiency"]
    # the selection keeps none of these few real events: no jet is counted (BTV's recipe, in
    # the analysis's phase space), and the log says so; tests/selection checks the values
    assert correction.evaluate("M", 5, 0.5, 60.0) == 0.0
    log = (results / "logs/corrections/btag_efficiency_analysis.log").read_text()
    assert "flavour 5: no jets in the selected events of 2 files" in log
    for sample in ("DY", "TT"):
        skim = read_tree(results / f"preselect/{sample}/nominal.root")
        for column in ("w_btag", "w_btag_up", "w_btag_down"):
            assert column in skim and np.all(np.isfinite(skim[column])), (sample, column)
    again = snakemake("-n", "preselect", *args).stdout
    assert "Nothing to be done" in again or "rule btag_efficiency:" not in again
