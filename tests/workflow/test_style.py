"""The code style the project holds itself to: `ruff check` and `ruff format --check` clean
(settings in pyproject.toml), on the package, the tests and the benchmarks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=" ".join)
def test_ruff_is_clean(command):
    # an unused import, an unsorted import block or an unformatted file fails here
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "analysis", "tests", "bench"], cwd=REPO,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
