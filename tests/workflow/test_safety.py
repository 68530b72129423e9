"""A plain `pytest` touches nothing outside the repository and the temp dir.

Installing packages, configuring and starting Slurm, or submitting jobs happen only when
HTT_TEST_SLURM=1 (or REQUIRE_SLURM=1) asks: on a cluster login node the test suite must not
submit to the real cluster, and on a workstation it must not reconfigure the system.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SLURM_OPT_IN

#: Commands that change the system or reach a scheduler; fakes of them record every call.
GUARDED = (
    "apt-get", "apt", "dpkg", "sbatch", "srun", "salloc", "scancel", "sinfo", "squeue",
    "scontrol", "sacct", "slurmctld", "slurmd", "systemctl", "service",
)  # fmt: skip


def _fake_commands(directory: Path, record: Path) -> None:
    for name in GUARDED:
        fake = directory / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\nexit 1\n')
        fake.chmod(0o755)


def test_default_run_of_the_slurm_tests_calls_no_system_command(tmp_path):
    """Fails if the Slurm fixture or tests run setup.sh (or any guarded command) without opt-in,
    e.g. when the opt-in check is dropped and `sinfo` is asked whether a Slurm answers."""
    fakes, record = tmp_path / "bin", tmp_path / "calls.log"
    fakes.mkdir()
    _fake_commands(fakes, record)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HTT_TEST_SLURM", "REQUIRE_SLURM")
    }
    env["PATH"] = f"{fakes}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-n", "0",
         "tests/workflow/test_slurm.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not record.exists(), f"called without opt-in: {record.read_text()}"
    assert "skipped" in result.stdout and SLURM_OPT_IN in result.stdout
