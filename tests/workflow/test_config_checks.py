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
