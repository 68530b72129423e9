"""A plain `pytest` touches nothing outside the repository and the temp dir.

Installing packages, configuring and starting Slurm, or submitting jobs happen only when
HTT_TEST_SLURM=1 (or REQUIRE_SLURM=1) asks, and an xrootd server starts only when HTT_TEST_XROOTD=1
(or REQUIRE_XROOTD=1) does: on a cluster login node the test suite must not submit to the real
cluster, and on a workstation it must not reconfigure the system or start daemons.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SLURM_OPT_IN
from tests.xrootd_server import OPT_IN as XROOTD_OPT_IN

#: Commands that change the system or reach a scheduler; fakes of them record every call.
GUARDED = (
    "apt-get", "apt", "dpkg", "sbatch", "srun", "salloc", "scancel", "sinfo", "squeue",
    "scontrol", "sacct", "slurmctld", "slurmd", "systemctl", "service", "xrootd",
)  # fmt: skip

#: The variables that opt in to what the guarded commands do (tests/conftest.py ``opted_in``).
OPT_IN_VARIABLES = ("HTT_TEST_SLURM", "REQUIRE_SLURM", "HTT_TEST_XROOTD", "REQUIRE_XROOTD")


def _fake_commands(directory: Path, record: Path) -> None:
    for name in GUARDED:
        fake = directory / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\nexit 1\n')
        fake.chmod(0o755)


def test_default_run_of_the_slurm_tests_calls_no_system_command(tmp_path):
    """Fails if the Slurm fixture or tests run setup.sh (or any guarded command) without opt-in,
    e.g. when the opt-in check is dropped and `sinfo` is asked whether a Slurm answers."""
    result, calls = _plain_pytest(tmp_path, "tests/workflow/test_slurm.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not calls, f"called without opt-in: {calls}"
    assert "skipped" in result.stdout and SLURM_OPT_IN in result.stdout


def test_default_run_of_the_xrootd_tests_starts_no_server(tmp_path):
    """Fails if the remote-file tests start an xrootd server (or call any guarded command)
    without opt-in."""
    result, calls = _plain_pytest(tmp_path, "tests/selection/test_samplefiles.py", "xrootd")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not calls, f"called without opt-in: {calls}"
    assert "skipped" in result.stdout and XROOTD_OPT_IN in result.stdout


def _plain_pytest(
    tmp_path: Path, module: str, keyword: str | None = None
) -> tuple[subprocess.CompletedProcess, str]:
    """``pytest`` of ``module`` (its tests matching ``keyword``) without any opt-in variable and
    with fakes of the guarded commands first on PATH; returns the run and the calls recorded."""
    fakes, record = tmp_path / "bin", tmp_path / "calls.log"
    fakes.mkdir()
    _fake_commands(fakes, record)
    env = {key: value for key, value in os.environ.items() if key not in OPT_IN_VARIABLES}
    env["PATH"] = f"{fakes}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    selection = ["-k", keyword] if keyword else []
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-n", "0",
         module, *selection],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return result, record.read_text() if record.exists() else ""
