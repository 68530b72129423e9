"""Two data-taking eras in one tiny toy analysis (config ``eras``): each era's samples
normalised to its own luminosity, each era with its own variation names (as eras with different
JES sources), one channel per era with correlated and decorrelated nuisance names, merged
channels summing the eras, and the configuration mistakes stopping before any job."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from analysis.core.eras import layered
from analysis.core.io import read_json, read_tree
from analysis.selection import correction_files as cf
from analysis.selection.friends import friend_columns
from analysis.stats.histograms import read_histograms
from tests.conftest import REPO, TINY_TOY_CONFIG, correction_files_overlay
from tests.workflow.conftest import copy_results
from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.slow

#: era -> (luminosity in pb^-1, its relative uncertainty): b has twice a's luminosity
ERAS = {"a": (300.0, 0.02), "b": (600.0, 0.05)}
#: systematics with one parameter per era; jet_es and the weight variations stay correlated
DECORRELATED = ["tau_es", "tune_*", "qcd_shape", "xsec_ZTT"]
#: what each era's file sets besides its luminosity: the eras differ in their variations (a has
#: no unclustered MET variation, b no jet energy scale and no FSR weights), as eras with
#: different JES uncertainty sources do
ERA_VARIATIONS = {
    "a": {"variations": {"met_unclustered": False}},
    "b": {"variations": {"jet_es": None}, "weights": {"variations": {"ps_fsr": None}}},
}
#: the channels of the default config: one per classifier class, and the control region
CHANNELS = ["ggH", "qqH", "ztt", "tt", "misc", "wjets_highmt"]


def two_era_files(tmp, results, **eras_settings):
    """Era files, a samples file with every toy sample once per era and a configfile layering
    both on the tiny toy config; returns the configfile."""
    files = {}
    for era, (lumi, uncertainty) in ERAS.items():
        files[era] = tmp / f"era_{era}.yaml"
        era_file = {"lumi": lumi, "workspace": {"lumi_uncertainty": uncertainty},
                    **ERA_VARIATIONS[era]}  # fmt: skip
        files[era].write_text(yaml.safe_dump(era_file))
    samples = yaml.safe_load((REPO / "config" / "samples.yaml").read_text())["samples"]
    per_era = {}
    for era in ERAS:
        for name, sample in samples.items():
            entry = {**sample, "era": era}
            if "alternative" in sample:
                entry["alternative"] = {
                    **sample["alternative"],
                    "of": f"{sample['alternative']['of']}_{era}",
                }
            per_era[f"{name}_{era}"] = entry
    samples_file = tmp / "samples.yaml"
    samples_file.write_text(yaml.safe_dump({"samples": per_era}))
    eras = {"files": {era: str(path) for era, path in files.items()},
            "decorrelated": DECORRELATED, **eras_settings}  # fmt: skip
    config = {**TINY_TOY_CONFIG, "results": str(results), "samples": str(samples_file),
              "eras": eras}  # fmt: skip
    path = tmp / f"{results.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def two_era_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eras")
    results = tmp / "results"
    # twice the tiny toy run's samples: twice its time, so twice the time limit
    snakemake("workspace", "--configfile", str(two_era_files(tmp, results)), timeout=1800)
    return tmp, results


def test_each_era_normalised_to_its_luminosity(two_era_run):
    """Every simulated event weighs its era's luminosity times what one pb^-1 gives it, and the
    pseudo-data of era b are twice era a's: catches one luminosity applied to every era."""
    _, results = two_era_run
    weights = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["weights"]
    weights["tau_id_sf"]["file"] = str(REPO / weights["tau_id_sf"]["file"])
    samples = yaml.safe_load((results.parent / "samples.yaml").read_text())["samples"]
    for era, (lumi, _) in ERAS.items():
        name = f"ZTT_{era}"
        skim = read_tree(results / "preselect" / name / "nominal.root")
        cutflow = read_json(results / "preselect" / name / "nominal.cutflow.json")
        era_weights = layered(weights, ERA_VARIATIONS[era].get("weights", {}))
        per_pb = friend_columns(skim, cutflow, name, samples[name],
                                {"lumi": 1.0, "weights": era_weights, "folds": 2})  # fmt: skip
        friend = read_tree(results / "friends" / name / "nominal.root", ["weight"])
        np.testing.assert_allclose(friend["weight"], lumi * per_pb["weight"], rtol=1e-12)
    data = {era: len(read_tree(results / "friends" / f"data_{era}" / "nominal.root", ["weight"])
                     ["weight"]) for era in ERAS}  # fmt: skip
    ratio = data["b"] / data["a"]
    assert abs(ratio - 2.0) < 5 * ratio * np.sqrt(1 / data["a"] + 1 / data["b"]), data


def test_each_era_has_its_own_variations(two_era_run):
    """The skims, friends and scores of a sample are those of its era's variations (each set of
    variation names has its own rules), and its friend trees carry its era's weight variations."""
    _, results = two_era_run
    expected = {
        "a": {"nominal", "tau_es_up", "tau_es_down", "jet_es_up", "jet_es_down"},
        "b": {"nominal", "tau_es_up", "tau_es_down", "met_uncl_up", "met_uncl_down"},
    }
    for era, variations in expected.items():
        for stage in ("preselect", "friends", "scores"):
            found = {path.stem for path in (results / stage / f"TT_{era}").glob("*.root")}
            assert found == variations, (stage, era, found)
        friend = set(read_tree(results / "friends" / f"TT_{era}" / "nominal.root"))
        assert ("weight_ps_fsr_up" in friend) == (era == "a"), friend
        assert "weight_ps_isr_up" in friend
    # data: the nominal alone, whatever its era
    assert {p.name for p in (results / "preselect" / "data_b").glob("*.root")} == {"nominal.root"}


def _modifiers(workspace):
    """{channel: {(process, modifier name, type)}} of a workspace specification."""
    return {
        channel["name"]: {
            (sample["name"], modifier["name"], modifier["type"])
            for sample in channel["samples"]
            for modifier in sample["modifiers"]
        }
        for channel in workspace["channels"]
    }


def test_one_channel_per_era_with_era_named_nuisances(two_era_run):
    _, results = two_era_run
    workspace = read_json(results / "workspace" / "workspace.json")
    configured = CHANNELS
    assert sorted(c["name"] for c in workspace["channels"]) == sorted(
        f"{channel}_{era}" for channel in configured for era in ERAS
    )
    modifiers = _modifiers(workspace)
    for era, (_, uncertainty) in ERAS.items():
        other = next(e for e in ERAS if e != era)
        names = {name for entries in (modifiers[f"{c}_{era}"] for c in configured)
                 for _, name, _ in entries}  # fmt: skip
        # decorrelated: the era's own parameter, never the other era's or a shared one
        assert {f"tau_es_{era}", f"lumi_{era}", f"xsec_ZTT_{era}", f"qcd_shape_{era}",
                f"tune_TT_{era}"} <= names, names  # fmt: skip
        assert not {f"tau_es_{other}", f"lumi_{other}", "tau_es", "lumi", "xsec_ZTT"} & names
        # correlated: one name in both eras
        assert {"pileup", "ps_isr", "xsec_TT", "qcd_norm", "mu"} <= names
        # an era's own variation names: only where its config sets them
        mine, not_mine = {"a": ({"jet_es", "ps_fsr"}, {"met_uncl"}),
                          "b": ({"met_uncl"}, {"jet_es", "ps_fsr"})}[era]  # fmt: skip
        assert mine <= names and not not_mine & names, names
        ztt = next(s for s in next(c for c in workspace["channels"] if c["name"] == f"ztt_{era}")
                   ["samples"] if s["name"] == "ZTT")  # fmt: skip
        lumi = next(m for m in ztt["modifiers"] if m["name"] == f"lumi_{era}")
        assert lumi["type"] == "normsys"
        assert lumi["data"]["hi"] == pytest.approx(1 + uncertainty, rel=1e-9)
        assert lumi["data"]["lo"] == pytest.approx(1 - uncertainty, rel=1e-9)
    parameters = workspace["measurements"][0]["config"]["parameters"]
    assert "lumi" not in {p["name"] for p in parameters}


def test_merged_channels_sum_the_eras(two_era_run):
    """On a copy of the per-era run with eras.channels: merged, each channel's histogram is the
    sum of its per-era channels, and an era's own variation moves that era's share alone."""
    tmp, results = two_era_run
    merged = tmp / "merged"
    copy_results(results, merged, rerun=("histograms", "workspace"))
    configfile = two_era_files(tmp, merged, channels="merged", decorrelated=["tau_es"])
    snakemake("workspace", "--configfile", str(configfile))
    per_era = read_histograms(results / "histograms" / "histograms.root")
    summed = read_histograms(merged / "histograms" / "histograms.root")
    for channel in ("ggH", "ztt", "wjets_highmt"):
        for process in ("ZTT", "TT", "W"):  # not QCD: each estimate is clipped at zero
            np.testing.assert_allclose(
                summed[f"{channel}/{process}/nominal"].values(),
                sum(per_era[f"{channel}_{era}/{process}/nominal"].values() for era in ERAS),
                rtol=1e-9, err_msg=f"{channel}/{process}",
            )  # fmt: skip
        np.testing.assert_allclose(
            summed[f"{channel}/ZTT/tau_es_a_up"].values(),
            per_era[f"{channel}_a/ZTT/tau_es_a_up"].values()
            + per_era[f"{channel}_b/ZTT/nominal"].values(),
            rtol=1e-9,
        )
        np.testing.assert_allclose(
            summed[f"{channel}/ZTT/pileup_up"].values(),
            sum(per_era[f"{channel}_{era}/ZTT/pileup_up"].values() for era in ERAS),
            rtol=1e-9,
        )
        # a variation era b does not name: era a's, era b's share at its nominal
        np.testing.assert_allclose(
            summed[f"{channel}/ZTT/jet_es_up"].values(),
            per_era[f"{channel}_a/ZTT/jet_es_up"].values()
            + per_era[f"{channel}_b/ZTT/nominal"].values(),
            rtol=1e-9,
        )
    workspace = read_json(merged / "workspace" / "workspace.json")
    modifiers = _modifiers(workspace)
    assert sorted(modifiers) == sorted(CHANNELS)
    names = {name for entries in modifiers.values() for _, name, _ in entries}
    assert {"tau_es_a", "tau_es_b", "lumi_a", "lumi_b", "jet_es", "met_uncl", "xsec_ZTT"} <= names
    assert not {"tau_es", "lumi", "tau_es_a_a"} & names


def test_input_gof_of_two_eras(two_era_run):
    """The goodness-of-fit tests of the input variables on the two eras of different variation
    names (each test's one channel sums the eras, tests/stats/test_gof.py checks the model):
    pseudo-data tests of two variables run and give p-values. Catches a gof job that cannot read
    an era's friend trees (their weight variations differ) or build the eras' model."""
    tmp, results = two_era_run
    configfile = two_era_files(tmp, results)
    config = yaml.safe_load(configfile.read_text())
    config["gof"] = {"variables": ["pt_1", "m_vis"], "pairs": False, "toys": 20, "data": "pseudo"}
    configfile.write_text(yaml.safe_dump(config))
    snakemake(str(results / "gof" / "gof.json"), "--configfile", str(configfile))
    summary = read_json(results / "gof" / "gof.json")
    assert [test["variables"] for test in summary["tests"]] == [["pt_1"], ["m_vis"]]
    assert all(0.0 <= test["p_value"] <= 1.0 and test["toys"] == 20 for test in summary["tests"])


def _dry_run_errors(tmp, config_changes=None, era_b=None, sample_change=None):
    """The error lines of a dry run of the two-era configuration with changes."""
    results = tmp / "results"
    configfile = two_era_files(tmp, results)
    if era_b is not None:
        (tmp / "era_b.yaml").write_text(yaml.safe_dump(era_b))
    if sample_change is not None:
        path = tmp / "samples.yaml"
        samples = yaml.safe_load(path.read_text())
        sample = samples["samples"]["W_b"]
        sample.update(sample_change)
        for key in [key for key, value in sample.items() if value is None]:
            del sample[key]  # None: leave the key out
        path.write_text(yaml.safe_dump(samples))
    if config_changes:
        config = yaml.safe_load(configfile.read_text())
        config["eras"].update(config_changes)
        configfile.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "workspace", "--configfile", str(configfile), check=False)
    assert result.returncode != 0
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("error:")]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sample_change": {"era": "c"}},
            "error: {samples}: sample 'W_b': era 'c' is not defined; name one of the eras in "
            "eras.files (a, b)",
        ),
        (
            {"sample_change": {"era": None}},
            "error: {samples}: sample 'W_b': no era; name one of the eras in eras.files (a, b)",
        ),
        (
            {"era_b": {"workspace": {"lumi_uncertainty": 0.05}}},
            "error: era 'b': none of its files ({tmp}/era_b.yaml) sets `lumi`",
        ),
        (
            {"era_b": {"lumi": 600.0, "histograms": {"blind_threshold": 0.2}}},
            "error: era 'b': {tmp}/era_b.yaml sets 'histograms', which is the same for every era",
        ),
        (
            {"config_changes": {"channels": "merged", "decorrelated": ["qcd_*"]}},
            "error: config: key 'eras.decorrelated': 'qcd_*' matches qcd_norm, which merged "
            "channels cannot split by era",
        ),
    ],  # fmt: skip
)
def test_era_mistakes_stop_with_one_line(tmp_path, change, expected):
    errors = _dry_run_errors(tmp_path, **change)
    expected = expected.format(tmp=tmp_path, samples=tmp_path / "samples.yaml")
    assert len(errors) == 1 and errors[0].startswith(expected), errors
    assert not (tmp_path / "results").exists(), "nothing was written"


def _correction_overlay(directory, names, nanoaod):
    """An era file pointing every correction file of a shipped era file at files generated in
    its layouts and names (the jet ID's for v15, which has no Jet_jetId), and the toy at its
    NanoAOD version and the toy certified luminosity."""
    files = cf.write_all(directory, np.full(10, 30.0), names)
    certified = {"certified_lumi": {"file": str(REPO / "tests/data/certified_lumi_toy.json")}}
    overlay = layered(
        correction_files_overlay(files, jet_id=nanoaod == "v15"),
        {"toydata": {"nanoaod": nanoaod}, "selection": certified},
    )
    path = directory / "files.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return str(path)


def test_the_shipped_2018_and_2024_eras_plan_one_analysis(tmp_path):
    """config/eras/2018UL.yaml and 2024.yaml (their correction files generated in their names)
    as the two eras of one analysis: their shape variations differ (regrouped JES sources against
    Total), so each era's samples run in its own preselection, friend and score rules, and one
    workspace job takes both. Catches the eras refused, or a sample planned with the other
    era's variation files."""
    results = tmp_path / "results"
    configfile = two_era_files(tmp_path, results)
    config = yaml.safe_load(configfile.read_text())
    presets = REPO / "config" / "nanoaod"
    config["eras"]["files"] = {
        "a": [str(presets / "v9.yaml"), str(REPO / "config/eras/2018UL.yaml"),
              _correction_overlay(tmp_path / "ul18", cf.UL18, "v9"), str(tmp_path / "era_a.yaml")],
        "b": [str(presets / "v15.yaml"), str(REPO / "config/eras/2024.yaml"),
              _correction_overlay(tmp_path / "run3", cf.RUN3_2024, "v15"),
              str(tmp_path / "era_b.yaml")],
    }  # fmt: skip
    configfile.write_text(yaml.safe_dump(config))
    planned = snakemake("-n", "workspace", "--configfile", str(configfile)).stdout
    assert planned.count("rule preselect_sample:") == 7, planned[-3000:]
    assert planned.count("rule preselect_sample_b:") == 7
    assert planned.count("rule friends_sample_b:") == 7
    assert planned.count("rule inject_sample_b:") == 7
    assert planned.count("rule workspace_build:") == 1
    assert "results/preselect/TT_b/jes_Total_up.root" in planned
    assert "results/preselect/TT_a/jes_Regrouped_Absolute_2018_up.root" in planned
    assert "preselect/TT_a/jes_Total_up.root" not in planned
