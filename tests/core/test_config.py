"""Config checks and digests of analysis/core/config.py that run before any job."""

from __future__ import annotations

import copy

import pytest

from analysis.core.config import EXECUTION_KEYS, analysis_settings, check_features
from analysis.core.errors import AnalysisError
from analysis.core.provenance import sha256_of


def test_execution_settings_leave_the_config_digest_unchanged(default_config):
    other = copy.deepcopy(default_config)
    other["results"] = "elsewhere"
    other["preselect"].update(chunksize=7, threads=16, mem_mb=1, dask={"mode": "none"})
    other["train"].update(threads=16, gpus=1)
    other["inference"]["ranking"]["chunk_size"] = 1
    digest = sha256_of(analysis_settings(default_config))
    # else versions.json would be rewritten by a run that only changed how jobs run
    assert sha256_of(analysis_settings(other)) == digest
    assert other != default_config, "the input is not modified in place"
    other["train"]["seed"] += 1
    assert sha256_of(analysis_settings(other)) != digest, "a setting that shapes results counts"


def test_execution_keys_exist(default_config):
    # a renamed key would silently be digested again (and rerun versions.json on every change)
    for key in EXECUTION_KEYS:
        section = default_config
        for part in key.split("."):
            assert part in section, key
            section = section[part]


def test_a_misspelled_feature_names_the_key_and_the_valid_columns():
    check_features(["pt_1", "m_vis"], ["pt_1", "m_vis", "met"])
    with pytest.raises(AnalysisError) as error:
        check_features(["pt_1", "mvis"], ["pt_1", "m_vis", "met"])
    assert str(error.value) == (
        "config: key 'train.features': 'mvis' is not a column of the skims; "
        "use some of pt_1, m_vis, met"
    )


def _merged(base: dict, *layers: dict) -> dict:
    """Snakemake's recursive merge of --configfile layers."""
    merged = copy.deepcopy(base)
    for layer in layers:
        stack = [(merged, layer)]
        while stack:
            target, source = stack.pop()
            for key, value in source.items():
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    stack.append((target[key], value))
                else:
                    target[key] = value
    return merged


@pytest.mark.parametrize("preset, era", [("v9", "2018UL"), ("v15", "2024")])
def test_era_files_validate_and_name_their_missing_correction_files(default_config, preset, era):
    # catches an era file whose correction entries the schema rejects, a weight correction
    # clashing with a branch variation, or an absent official file reaching the user as a
    # traceback (or a Snakemake "missing input") instead of one line naming its key
    from analysis.core.config import (
        check_correction_files,
        check_weights,
        load_yaml,
        shape_variations,
        validate,
    )
    from tests.conftest import REPO

    config = _merged(
        default_config,
        load_yaml(REPO / "config" / "nanoaod" / f"{preset}.yaml"),
        load_yaml(REPO / "config" / "eras" / f"{era}.yaml"),
    )
    validate(config, REPO / "workflow" / "schemas" / "config.schema.yaml", era)
    check_weights(config["weights"])
    assert {"jer_up", "tau_es_up"} <= set(shape_variations(config["variations"]))
    with pytest.raises(AnalysisError, match=r"key 'weights\.corrections\.[a-z_.]+\.file'") as err:
        check_correction_files(config)
    assert "\n" not in str(err.value)
