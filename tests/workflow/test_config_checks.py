"""Config mistakes that only the data would reveal, caught before any job runs."""

from __future__ import annotations

import pytest

from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.slow


def test_misspelled_feature_stops_before_any_job(tmp_path):
    # without the check, the run would preselect every sample and fail when training starts
    result = snakemake(
        "-n", "--config", "train={features: [pt_1, mvis]}", f"results={tmp_path}", check=False
    )
    assert result.returncode != 0
    errors = [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")
    ]
    assert len(errors) == 1, result.stdout + result.stderr
    assert errors[0].startswith(
        "error: config: key 'train.features': 'mvis' is not a column of the skims; use some of "
        "pt_1, eta_1, "
    )
    assert "m_vis" in errors[0]  # the name meant is among those listed
    assert not any(tmp_path.iterdir()), "nothing was written"


def test_gof_settings_errors_stop_before_any_job(tmp_path):
    """A misspelled `gof.variables` entry, testing observed data of the signal region while
    blinded, and an unknown `gof.region` each stop the dry run with one line naming the key:
    catches a check that names `train.features`, runs the goodness-of-fit tests on blinded data,
    or tests the signal region for a misspelled control region."""
    for setting, expected in (
        ("gof={variables: [mvis]}", "error: config: key 'gof.variables': 'mvis' is not a column"),
        ("gof={data: observed}", "error: config: gof.data: observed tests the data of the signal"),
        ("gof={region: wjets}", "error: config: gof.region: 'wjets' is not in histograms.control"),
    ):
        result = snakemake("-n", "gof", "--config", setting, f"results={tmp_path}", check=False)
        assert result.returncode != 0
        errors = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("error:")
        ]
        assert len(errors) == 1 and errors[0].startswith(expected), errors
