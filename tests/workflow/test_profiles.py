"""The two profiles together, as Snakemake combines them: the workflow profile (profiles/default)
wins over `--profile cluster` key by key, so a key set in both must have the same value there, or
the cluster's value is silently dropped."""

from __future__ import annotations

import subprocess
import sys

import pytest
from snakemake.profiles import ProfileConfigFileParser

from tests.conftest import REPO

SITE = ("HTT_SLURM_PARTITION", "HTT_SLURM_ACCOUNT", "HTT_SLURM_GPU_PARTITION", "HTT_SLURM_GPUS",
        "HTT_SLURM_GPU_MODEL")  # fmt: skip


def settings(path, monkeypatch) -> dict[str, object]:
    for name in SITE:
        monkeypatch.delenv(name, raising=False)
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def test_cluster_sets_no_key_the_workflow_profile_overrides(monkeypatch):
    default = settings(REPO / "profiles" / "default" / "config.yaml", monkeypatch)
    cluster = settings(REPO / "cluster" / "config.yaml", monkeypatch)
    # e.g. `printshellcmds: false` in profiles/default turned the cluster's `true` off
    overridden = {key: (cluster[key], default[key]) for key in cluster.keys() & default.keys()}
    assert all(ours == theirs for ours, theirs in overridden.values()), overridden


@pytest.mark.slow
def test_workflow_profile_wins_over_profile(tmp_path):
    """What the profiles' comments say Snakemake does (if a Snakemake release changed it, the
    profiles' comments and the test above would be wrong)."""
    (tmp_path / "profiles" / "default").mkdir(parents=True)
    (tmp_path / "profiles" / "default" / "config.yaml").write_text("cores: 3\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "config.yaml").write_text("cores: 5\nprintshellcmds: true\n")
    (tmp_path / "Snakefile").write_text(
        'print("SETTINGS", workflow.cores, workflow.output_settings.printshellcmds)\n'
        'rule a:\n    output: "a"\n    shell: "touch a"\n'
    )
    run = [sys.executable, "-m", "snakemake", "-n", "--profile", "site"]
    result = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    printed = [line for line in result.stdout.splitlines() if line.startswith("SETTINGS")]
    # cores from the workflow profile, printshellcmds (not in it) from --profile
    assert printed == ["SETTINGS 3 True"], result.stdout + result.stderr
