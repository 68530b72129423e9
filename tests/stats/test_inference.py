"""`snakemake inference` end to end on a published-style external workspace with a PatchSet (the
stages themselves are tested beside their modules: test_fit.py, test_pulls.py, test_ranking.py,
test_scan.py, test_limits.py, test_model.py, test_minimizer.py)."""

from __future__ import annotations

import json

import cabinetry
import pyhf
import pytest

from analysis.stats import model as model_utils
from tests.stats.references import REFERENCE_TOL, TOLERANCE, WORKSPACES


@pytest.mark.slow
def test_inference_workflow_on_a_patched_external_workspace(tmp_path):
    """`snakemake inference` on a published-style workspace with a PatchSet: every output of the
    results contract, the fit equal to cabinetry's, and a rerun has nothing to do.
    Then `snakemake` (all): the fit figures of that workspace, and no stage upstream of it."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    results = tmp_path / "results"
    settings = {
        "external_workspace": str(WORKSPACES / "simple.json"),
        "patch": str(WORKSPACES / "patchset.json"),
        "patch_name": "signal_high",
        "asimov": False,  # the default (null) fits Asimov data while our analysis is blinded
        "ranking": {"chunk_size": 2},
        "scan": {"points": 15, "chunk_size": 8},
    }
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump({"results": str(results), "inference": settings}))

    def snakemake(*args: str, target: str = "inference", check: bool = True) -> str:
        command = [sys.executable, "-m", "snakemake", "--cores", "2", target]
        run = subprocess.run(
            [*command, "--configfile", str(configfile), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            # the jobs' `python` is this interpreter, whatever the caller's PATH
            env={**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        )
        assert run.returncode == 0 or not check, run.stderr[-3000:]
        return run.stdout + run.stderr

    snakemake()
    fit_dir = results / "fit"
    fit = json.loads((fit_dir / "fit.json").read_text())
    assert fit["poi"] == "mu" and fit["asimov"] is False and fit["converged"] is True
    setup = model_utils.setup_from_files(WORKSPACES / "simple.json", settings)
    # the patched workspace fitted by cabinetry (not our fit code): catches the patch or the
    # settings lost between the config and the fit job
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    expected = cabinetry.fit.fit(setup.model, setup.data, tolerance=REFERENCE_TOL)
    poi = setup.model.config.poi_index
    assert fit["bestfit"]["mu"] == pytest.approx(
        [expected.bestfit[poi], expected.uncertainty[poi]], abs=TOLERANCE
    )
    assert fit["correlation"]["parameters"] == setup.model.config.par_names
    # three ranked parameters in two chunks, merged and sorted
    entries = json.loads((fit_dir / "ranking.json").read_text())
    assert sorted(entry["parameter"] for entry in entries) == ["bkg_norm", "bkg_shape", "lumi"]
    keys = {"parameter", "pull", "constraint", "impact_prefit_up", "impact_prefit_down"}
    assert all(keys | {"impact_postfit_up", "impact_postfit_down"} <= set(e) for e in entries)
    totals = [abs(e["impact_postfit_up"]) + abs(e["impact_postfit_down"]) for e in entries]
    assert totals == sorted(totals, reverse=True)
    assert len(list((fit_dir / "ranking").glob("chunk_*.json"))) == 2
    scan_document = json.loads((fit_dir / "scan_mu.json").read_text())
    assert scan_document["poi"] == "mu" and len(scan_document["values"]) == 15
    assert len(scan_document["delta_twice_nll"]) == 15 and len(scan_document["interval_68"]) == 2
    pulls_document = json.loads((fit_dir / "pulls.json").read_text())
    assert {p["parameter"] for p in pulls_document["constrained"]} == {
        "bkg_norm",
        "bkg_shape",
        "lumi",
    }
    significance = json.loads((fit_dir / "significance.json").read_text())["pois"]["mu"]
    assert significance["observed_significance"] > 0
    limit = json.loads((fit_dir / "limits.json").read_text())["pois"]["mu"]
    assert limit["expected_minus2sigma"] < limit["expected"] < limit["expected_plus2sigma"]
    # a rerun has nothing to do
    assert "Nothing to be done" in snakemake("--dry-run")

    # the default target adds the fit figures (no histograms: stacks by bin index, no templates)
    output = snakemake(target="all")
    assert "rule histograms" not in output and "rule train" not in output
    figures = {p.name for p in (results / "plots" / "fit").rglob("*.png")}
    assert {"pulls.png", "impacts.png", "correlation.png", "scan_mu.png", "limits.png"} <= figures
    assert {
        f"{channel}_{stage}.png" for channel in ("SR",) for stage in ("prefit", "postfit")
    } <= figures, figures
    assert "| data |" in (results / "plots" / "fit" / "yields.md").read_text()
    # a scan figure of a parameter that is not a POI is refused, naming the key
    configfile.write_text(
        yaml.safe_dump(
            {"results": str(results), "inference": settings, "plots": {"scans": ["lumi"]}}
        )
    )
    refused = snakemake("--dry-run", target="all", check=False)
    assert "plots.scans: lumi is not a POI of the fit (mu)" in refused
