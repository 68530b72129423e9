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
