"""The Snakemake workflow end to end: the toy chain through training to the workspace, real
NanoAOD through a samples file, reproducibility, config errors, and `snakemake --lint`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyhf
import pytest
import yaml

from analysis.core.io import read_json, read_tree, read_with_friends
from analysis.stats.histograms import read_histograms
from tests.conftest import DATA, REPO, TINY_TOY_CONFIG
from tests.digests import digests, moved_packages

pytestmark = pytest.mark.slow

#: What the tiny toy run makes: every output that ``tests/data/output_digests.json`` pins.
TINY_TARGETS = ("workspace", "train", "fit", "pulls", "ranking")


def snakemake(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's workflow from the repository root."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    # jobs run `python -m analysis...`: make that the interpreter running the tests
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def tiny_toy_config(tmp_path, results):
    """A configfile layering a tiny toy dataset on the default config."""
    path = tmp_path / f"{results.name}.yaml"
    path.write_text(yaml.safe_dump({**TINY_TOY_CONFIG, "results": str(results)}))
    return path


@pytest.fixture(scope="module")
def toy_run(tiny_run):
    """The session's tiny toy run (tests/workflow/conftest.py)."""
    return tiny_run


def test_toy_workflow_to_scores(toy_run):
    _, results = toy_run
    samples = yaml.safe_load((REPO / "config" / "samples.yaml").read_text())["samples"]
    for sample in samples:
        assert (results / "friends" / sample / "nominal.root").exists(), sample
    varied = sorted(p.stem for p in (results / "friends" / "ZTT").glob("*.root"))
    assert varied == sorted(
        [
            "nominal",
            "tau_es_up",
            "tau_es_down",
            "jet_es_up",
            "jet_es_down",
            "met_uncl_up",
            "met_uncl_down",
        ]
    )
    assert sorted(p.stem for p in (results / "friends" / "data").glob("*.root")) == ["nominal"]
    columns = read_with_friends(
        results / "preselect" / "ZTT" / "nominal.root",
        [results / "friends" / "ZTT" / "nominal.root"],
        ["m_vis", "weight", "fold"],
    )
    assert len(columns["weight"]) > 100 and set(np.unique(columns["fold"])) == {0, 1}
    versions = read_json(results / "versions.json")
    assert versions["packages"]["coffea"] and versions["python"].startswith("3.")
    data = read_tree(results / "friends" / "data" / "nominal.root", ["weight"])["weight"]
    simulated = sum(
        read_tree(results / "friends" / s / "nominal.root", ["weight"])["weight"].sum()
        for s in samples
        if s != "data" and "alternative" not in samples[s]
    )
    assert abs(len(data) - simulated) < 5 * np.sqrt(simulated), "pseudo-data matches the simulation"
    for sample in samples:
        for friend in (results / "friends" / sample).glob("*.root"):
            scores = read_with_friends(
                results / "preselect" / sample / friend.name,
                [friend, results / "scores" / sample / friend.name],
                ["score_ggH", "category", "weight"],
            )
            assert np.all((scores["score_ggH"] >= 0) & (scores["score_ggH"] <= 1))
    diagnostics = read_json(results / "train" / "diagnostics.json")
    assert diagnostics["roc"]["ztt"]["auc"] > 0.7
    assert read_json(results / "train" / "fold1" / "history.json")["epochs"] >= 1
    histograms = read_histograms(results / "histograms" / "histograms.root")
    assert {"ggH/ggH/nominal", "ggH/ZTT/tau_es_up", "ztt/TT/tune_TT_up", "misc/QCD/qcd_shape_up",
            "qqH/W/pileup_down"} <= set(histograms)  # fmt: skip
    # blinded by default: no data histogram in the file, Asimov observations in the workspace
    assert not [name for name in histograms if name.split("/")[1] == "data"]
    workspace = pyhf.Workspace(read_json(results / "workspace" / "workspace.json"))
    model = workspace.model()
    assert model.config.poi_name == "mu"
    asimov = model.expected_data(model.config.suggested_init(), include_auxdata=False)
    np.testing.assert_allclose(workspace.data(model, include_auxdata=False), asimov, rtol=1e-9)


def test_nothing_left_to_do_after_a_run(toy_run):
    tmp, results = toy_run
    dry = snakemake(*TINY_TARGETS, "-n", "--configfile", str(tiny_toy_config(tmp, results)))
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # how preselection and training run (dask mode, chunk size, threads) is no reason to rerun
    other = tmp / "other.yaml"
    execution = {
        "preselect": {"chunksize": 500, "dask": {"mode": "none"}},
        "train": {**TINY_TOY_CONFIG["train"], "threads": 1},
    }
    other.write_text(yaml.safe_dump({**TINY_TOY_CONFIG, **execution, "results": str(results)}))
    dry = snakemake(*TINY_TARGETS, "-n", "--configfile", str(other))
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_outputs_match_committed_digests(toy_run):
    """Refactors keep behaviour: every output of the tiny run equals the committed reference.

    Fails on any change of selection, weights, training, binning, workspace or fit results
    (e.g. a cut applied as >= instead of >, or a reordered merge). When a change is meant to
    alter outputs, regenerate the reference (see tests/digests.py) and say why in the commit.
    """
    _, results = toy_run
    reference = read_json(DATA / "output_digests.json")
    expected, actual = reference["digests"], digests(results)
    assert sorted(actual) == sorted(expected), "the set of outputs changed"
    changed = sorted(name for name in expected if actual[name] != expected[name])
    moved = moved_packages(reference["packages"], results)
    assert not changed, (
        f"outputs differ from tests/data/output_digests.json: {changed}; packages moved since "
        f"the reference was made: {moved or 'none'}"
    )


def test_same_config_same_results(toy_run):
    tmp, results = toy_run
    again = tmp / "again"
    target = again / "workspace" / "workspace.json"
    snakemake(str(target), "--configfile", str(tiny_toy_config(tmp, again)))
    assert (results / "workspace" / "workspace.json").read_bytes() == target.read_bytes()
    first, second = (
        read_histograms(d / "histograms" / "histograms.root") for d in (results, again)
    )
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name].view(), second[name].view()), name
    for fold in ("fold0", "fold1"):
        model = Path("train") / fold / "model.pt"
        assert (results / model).read_bytes() == (again / model).read_bytes()
    for stage in ("preselect", "friends", "scores"):
        first = read_tree(results / stage / "ZTT" / "tau_es_up.root")
        second = read_tree(again / stage / "ZTT" / "tau_es_up.root")
        assert first.keys() == second.keys()
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])
    cutflows = [
        read_json(d / "preselect" / "ZTT" / "nominal.cutflow.json") for d in (results, again)
    ]
    for cutflow in cutflows:
        cutflow.pop("files")  # the input paths differ: they live in the two results directories
    assert cutflows[0] == cutflows[1]


def test_gof_target_on_a_copy_of_the_toy_run(toy_run):
    """`snakemake gof` (on a copy of the toy run, so the pinned outputs stay as they are): a
    gof.json with every variable and pair in order, Asimov data while blinded (statistic 0,
    p-value 1), and both figures; catches a chunk left out of the gather, tests run on data while
    blinded, or a figure not produced."""
    from analysis.stats.results import GofResults
    from tests.workflow.conftest import copy_results

    tmp, results = toy_run
    copy = copy_results(results, tmp / "gof_results")
    variables = ["m_vis", "pt_2", "njets"]
    configfile = tmp / "gof.yaml"
    settings = {"variables": variables, "toys": 10, "chunk_size": 4, "pairs": True}
    configfile.write_text(
        yaml.safe_dump({**TINY_TOY_CONFIG, "results": str(copy), "gof": settings})
    )
    snakemake("gof", "--configfile", str(configfile))
    gof = GofResults.read(copy / "gof" / "gof.json")
    assert gof.data == "asimov"
    assert [test.variables for test in gof.tests] == [
        ("m_vis",),
        ("pt_2",),
        ("njets",),
        ("m_vis", "pt_2"),
        ("m_vis", "njets"),
        ("pt_2", "njets"),
    ]
    # Asimov data: the saturated statistic is 0, so no toy is below it
    assert all(test.chi2 < 1e-3 and test.p_value == 1.0 and test.toys == 10 for test in gof.tests)
    assert 0.0 <= gof.uniformity_p_value <= 1.0
    for name in ("p_values", "p_value_histogram"):
        assert (copy / "plots" / "gof" / f"{name}.png").stat().st_size > 0
    assert not (results / "gof").exists()


def test_real_nanoaod_through_a_samples_file(tmp_path):
    results = tmp_path / "results"
    snakemake(
        "friends",
        "--configfile",
        str(DATA / "real_nanoaod_config.yaml"),
        "--config",
        f"results={results}",
    )
    dy = read_json(results / "preselect" / "DY" / "nominal.cutflow.json")
    tt = read_json(results / "preselect" / "TT" / "nominal.cutflow.json")
    assert dy["cuts"][0]["events"] == 40 and dy["sumw"]["source"] == "Runs tree"
    assert tt["cuts"][0]["events"] == 200 and tt["sumw"]["source"] == "processed events"
    assert (results / "friends" / "TT" / "jet_es_up.root").exists()
    assert "kept 0 events" in (results / "logs" / "preselect" / "TT.log").read_text()


def test_bad_config_stops_with_one_line(tmp_path):
    result = snakemake("-n", "--config", "lumi=-1", f"results={tmp_path}", check=False)
    assert result.returncode != 0
    errors = [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")
    ]
    assert errors == [
        "error: config: key 'lumi': -1 is less than or equal to the minimum of 0; "
        "see config/README.md for allowed values"
    ]


def test_fitting_data_while_blinded_stops_with_one_line(tmp_path):
    """`inference.asimov: false` alone once fitted blinded bins that hold the prediction."""
    configfile = tmp_path / "fit_data.yaml"
    blinded_fit_on_data = {"results": str(tmp_path), "inference": {"asimov": False}}
    configfile.write_text(yaml.safe_dump(blinded_fit_on_data))
    result = snakemake("-n", "fit", "--configfile", str(configfile), check=False)
    assert result.returncode != 0
    errors = [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")
    ]
    assert errors == [
        "error: config: inference.asimov: false fits observed data but the analysis is blinded "
        "(unblind: false); set unblind: true to unblind histograms and fits together, or leave "
        "inference.asimov null"
    ]


def test_exports_of_the_workspace(toy_run):
    """`snakemake datacard xml` on the toy run: a combine datacard whose blinded data_obs is the
    Asimov prediction, and HistFactory XML that pyhf reads back as the same workspace."""
    import uproot

    from analysis.stats.histfactory import read_xml
    from tests.workflow.conftest import copy_results

    tmp, shared = toy_run
    results = copy_results(shared, tmp / "exports")
    snakemake("datacard", "xml", "--configfile", str(tiny_toy_config(tmp, results)))
    spec = read_json(results / "workspace" / "workspace.json")
    text = (results / "datacard" / "datacard.txt").read_text()
    assert "# BLINDED: data_obs is the Asimov prediction" in text
    assert f"imax {len(spec['channels'])} " in text
    with uproot.open(results / "datacard" / "shapes.root") as shapes:
        for channel in spec["channels"]:
            name = channel["name"]
            total = sum(np.asarray(sample["data"]) for sample in channel["samples"])
            np.testing.assert_allclose(shapes[f"{name}/data_obs"].values(), total, rtol=1e-9)
    back = read_xml(results / "xml")
    assert sorted(back.channels) == sorted(c["name"] for c in spec["channels"])
    assert back.get_measurement()["config"]["poi"] == "mu"


def test_lint_is_clean():
    result = snakemake("--lint")
    assert "Lints for" not in result.stdout + result.stderr
