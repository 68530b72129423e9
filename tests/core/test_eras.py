"""Each era's config from its files, and the checks on eras and samples (analysis/core/eras.py)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from analysis.core.config import shape_variations, weight_variation_columns
from analysis.core.eras import (
    check_decorrelated,
    check_sample_eras,
    era_configs,
    era_settings,
    is_decorrelated,
    layered,
    lumi_components,
    lumi_total,
    sample_config,
)
from analysis.core.errors import AnalysisError
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def with_eras(default_config, tmp_path, **files):
    """The default config with eras whose files (name -> overlay mapping) are written to
    ``tmp_path``."""
    config = copy.deepcopy(default_config)
    paths = {}
    for era, overlay in files.items():
        paths[era] = str(tmp_path / f"{era}.yaml")
        (tmp_path / f"{era}.yaml").write_text(yaml.safe_dump(overlay))
    config["eras"]["files"] = paths
    return config


def test_layered_merges_mappings_and_replaces_lists():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    result = layered(base, {"a": {"c": [3]}, "e": 2})
    assert result == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}, "the base is left as it was"


def test_each_era_is_the_config_with_its_files_layered(default_config, tmp_path):
    config = with_eras(
        default_config,
        tmp_path,
        x={"lumi": 100.0, "selection": {"muon": {"pt": 27.0}}, "plots": {"lumi_text": "x"}},
        y={"lumi": 200.0, "workspace": {"lumi_uncertainty": 0.05}},
    )
    configs = era_configs(config, SCHEMA)
    assert configs["x"]["lumi"] == 100.0 and configs["y"]["lumi"] == 200.0
    assert configs["x"]["selection"]["muon"] == {"pt": 27.0, "eta": 2.1, "iso": 0.15}
    assert configs["y"]["selection"] == default_config["selection"]
    assert configs["x"]["plots"] == default_config["plots"], "an era's plots are ignored"
    settings = era_settings(config, configs)
    assert settings["names"] == ["x", "y"]
    assert settings["lumi_uncertainty"] == {"x": {"lumi_x": 0.025}, "y": {"lumi_y": 0.05}}
    assert sample_config(config, configs, {"era": "y"}) is configs["y"]
    assert sample_config(default_config, {}, {}) is default_config
    assert era_settings(default_config, {}) is None


def test_the_shipped_era_files_are_eras(default_config):
    """config/eras/*.yaml on their NanoAOD presets are valid eras (as their comments say)."""
    config = copy.deepcopy(default_config)
    config["eras"]["files"] = {"2018UL": config_files_2018()}
    configs = era_configs(config, SCHEMA)
    assert configs["2018UL"]["lumi"] == 59830.0
    assert configs["2018UL"]["variations"]["jet_es"] is None
    run3 = [str(REPO / "config/nanoaod/v15.yaml"), str(REPO / "config/eras/2024.yaml")]
    config["eras"]["files"] = {"2024": run3}
    configs = era_configs(config, SCHEMA)
    assert configs["2024"]["workspace"]["lumi_uncertainty"] == {"lumi_2024": 0.016}
    pileup = configs["2024"]["weights"]["corrections"]["pileup"]
    assert pileup["correction"] == "Collisions24_BCDEFGHI_goldenJSON"
    # one analysis of both, though their JES uncertainty sources differ (Regrouped_* vs Total)
    config["eras"]["files"] = {"2018UL": config_files_2018(), "2024": run3}
    configs = era_configs(config, SCHEMA)
    jes = {era: shape_variations(c["variations"]) for era, c in configs.items()}
    assert "jes_Regrouped_Absolute_2018_up" in jes["2018UL"]
    assert "jes_Total_up" in jes["2024"] and "jes_Total_up" not in jes["2018UL"]


def config_files_2018() -> list[str]:
    return [str(REPO / "config/nanoaod/v9.yaml"), str(REPO / "config/eras/2018UL.yaml")]


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ({"workspace": {"lumi_uncertainty": 0.02}}, "era 'x': none of its files"),
        ({"lumi": 1.0, "train": {"seed": 1}}, "era 'x': {path} sets 'train', which is the same"),
        ({"lumi": 1.0, "workspace": {"poi": "combined"}}, "era 'x': {path} sets 'workspace.poi'"),
        ({"lumi": -1.0}, "era 'x' ({path}): key 'lumi': -1.0 is less than or equal to"),
    ],
)
def test_era_file_mistakes(default_config, tmp_path, overlay, expected):
    config = with_eras(default_config, tmp_path, x=overlay)
    with pytest.raises(
        AnalysisError, match="^" + re.escape(expected.format(path=tmp_path / "x.yaml"))
    ):
        era_configs(config, SCHEMA)


def test_a_numeric_era_name_must_be_quoted(default_config):
    config = copy.deepcopy(default_config)
    config["eras"]["files"] = {2024: "x.yaml"}
    with pytest.raises(AnalysisError, match="era 2024 is not a string; quote it"):
        era_configs(config, SCHEMA)


def test_eras_may_name_different_variations(default_config, tmp_path):
    """Each era keeps its own variation names (the workflow gives each set its own rules, and the
    histograms take an era without a variation at its nominal)."""
    config = with_eras(
        default_config, tmp_path, x={"lumi": 1.0},
        y={"lumi": 1.0, "weights": {"variations": {"ps_isr": None}},
           "variations": {"jet_es": None}},
    )  # fmt: skip
    configs = era_configs(config, SCHEMA)
    assert "weight_ps_isr_up" in weight_variation_columns(configs["x"]["weights"])
    assert "weight_ps_isr_up" not in weight_variation_columns(configs["y"]["weights"])
    assert "jet_es_up" in shape_variations(configs["x"]["variations"])
    assert "jet_es_up" not in shape_variations(configs["y"]["variations"])


def test_sample_eras():
    samples = {"A": {"era": "x"}, "B": {"era": "x", "alternative": {"of": "A"}}}
    check_sample_eras(samples, ["x", "y"], "s.yaml")
    with pytest.raises(AnalysisError, match="^s.yaml: sample 'A': era 'x' but the config"):
        check_sample_eras(samples, [], "s.yaml")
    with pytest.raises(AnalysisError, match="^s.yaml: sample 'A': era 'x' is not defined"):
        check_sample_eras(samples, ["y"], "s.yaml")
    with pytest.raises(AnalysisError, match="^s.yaml: sample 'B': era 'y' differs from that of"):
        check_sample_eras({**samples, "B": {**samples["B"], "era": "y"}}, ["x", "y"], "s.yaml")


def test_decorrelated_patterns(default_config):
    assert is_decorrelated("lumi", [])
    assert is_decorrelated("jes_Regrouped_HF_2018", ["jes_*_2018"])
    assert not is_decorrelated("jet_es", ["tau_es"])
    config = copy.deepcopy(default_config)
    config["eras"].update(files={"x": "x.yaml"}, channels="merged", decorrelated=["xsec_W"])
    with pytest.raises(AnalysisError, match="'xsec_W' matches xsec_W, which merged channels"):
        check_decorrelated(config)
    config["eras"]["channels"] = "per_era"
    check_decorrelated(config)


def test_luminosity_components_shared_between_eras(default_config, tmp_path):
    """A number is the era's own parameter; components keep their names, so a name in two eras
    is one parameter of both, each era with its own size; one era's total is their quadrature
    sum (the shipped 2018UL file: the LUM POG's 1.5%, 2.0% and 0.2% make its 2.5%)."""
    shared = {"lumi_x": 0.01, "lumi_13TeV_correlated": 0.02}
    config = with_eras(
        default_config, tmp_path,
        x={"lumi": 100.0, "workspace": {"lumi_uncertainty": shared}},
        y={"lumi": 200.0, "workspace": {"lumi_uncertainty": {"lumi_13TeV_correlated": 0.03}}},
    )  # fmt: skip
    settings = era_settings(config, era_configs(config, SCHEMA))
    assert settings["lumi_uncertainty"] == {"x": shared, "y": {"lumi_13TeV_correlated": 0.03}}
    assert lumi_components("z", 0.04) == {"lumi_z": 0.04}
    assert lumi_total(0.04) == 0.04
    assert lumi_total({"a": 0.03, "b": 0.04}) == pytest.approx(0.05, rel=1e-12)
    era_2018 = yaml.safe_load((REPO / "config" / "eras" / "2018UL.yaml").read_text())
    assert lumi_total(era_2018["workspace"]["lumi_uncertainty"]) == pytest.approx(0.025, abs=1e-4)


@pytest.mark.parametrize("uncertainty", [{"tau_es": 0.01}, {}, {"lumi_x": 0.5}])
def test_luminosity_components_need_lumi_names_and_sizes(default_config, tmp_path, uncertainty):
    """A component not named lumi_* could take a systematic's name; sizes as for a number."""
    config = with_eras(
        default_config, tmp_path,
        x={"lumi": 100.0, "workspace": {"lumi_uncertainty": uncertainty}},
        y={"lumi": 200.0},
    )  # fmt: skip
    with pytest.raises(AnalysisError, match=r"era 'x'.*lumi_uncertainty"):
        era_configs(config, SCHEMA)
