"""The Slurm profile (cluster/config.yaml) as Snakemake reads it: the site settings from the
environment, the GPU request and its CPU fallback, and rule names that exist (Snakemake silently
ignores resources and groups for unknown rules, so a renamed rule would lose its GPU unnoticed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from snakemake.profiles import ProfileConfigFileParser

from tests.conftest import REPO

PROFILE = REPO / "cluster" / "config.yaml"
SITE = ("HTT_SLURM_PARTITION", "HTT_SLURM_ACCOUNT", "HTT_SLURM_GPU_PARTITION", "HTT_SLURM_GPUS",
        "HTT_SLURM_GPU_MODEL")  # fmt: skip


def profile(monkeypatch, **env: str) -> dict[str, object]:
    """The profile's command-line settings for this environment."""
    for name in SITE:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with PROFILE.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def test_defaults(monkeypatch):
    settings = profile(monkeypatch)
    assert settings["executor"] == "slurm"
    assert int(settings["retries"]) >= 1 and settings["rerun-incomplete"] == "True"
    assert settings["set-resources"] == ["train_fold:gpu=1", "train_fold:slurm_partition=gpu"]
    # no partition or account unless given: Slurm's defaults apply
    assert not any("slurm_" in entry for entry in settings["default-resources"])


def test_site_settings_from_the_environment(monkeypatch):
    settings = profile(
        monkeypatch, HTT_SLURM_PARTITION="short", HTT_SLURM_ACCOUNT="htt",
        HTT_SLURM_GPU_PARTITION="a100", HTT_SLURM_GPUS="2", HTT_SLURM_GPU_MODEL="a100",
    )  # fmt: skip
    assert {"slurm_partition=short", "slurm_account=htt"} <= set(settings["default-resources"])
    assert sorted(settings["set-resources"]) == [
        "train_fold:gpu=2", "train_fold:gpu_model=a100", "train_fold:slurm_partition=a100"
    ]  # fmt: skip


def test_cpu_fallback(monkeypatch):
    settings = profile(monkeypatch, HTT_SLURM_GPUS="0", HTT_SLURM_PARTITION="short")
    # no GPU and no GPU partition: training goes to the default partition like every other job
    assert settings["set-resources"] == ["train_fold:gpu=0"]
    assert "slurm_partition=short" in settings["default-resources"]


@pytest.mark.slow
def test_rules_named_in_the_profile_exist(monkeypatch):
    settings = profile(monkeypatch)
    named = {entry.split(":")[0] for entry in settings["set-resources"]}
    named |= {entry.split("=")[0] for entry in settings["groups"]}
    rules = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True,
        text=True, check=True, timeout=300,
    ).stdout.split()  # fmt: skip
    assert named <= set(rules), sorted(named - set(rules))
