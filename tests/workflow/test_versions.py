"""When `versions.json` is rewritten: with a new commit, a tree that became dirty or a config
change that shapes results; not when a dirty tree is edited further, nor for execution settings
(threads, chunk sizes), so a second identical invocation has nothing to do. Run on a scratch git
checkout of the workflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

#: What `snakemake results/versions.json` needs from the repository.
WORKFLOW_FILES = ("Snakefile", "profiles", "workflow", "analysis", "config", "envs")

TARGET = "results/versions.json"


def git(directory: Path, *args: str) -> None:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args]
    subprocess.run(command, cwd=directory, capture_output=True, check=True, timeout=60)


def snakemake(directory: Path, *args: str) -> str:
    """Snakemake's output; the jobs' `python -m analysis...` is this interpreter."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--cores", "1", TARGET, *args]
    result = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return result.stdout + result.stderr


def reruns(directory: Path, *args: str) -> bool:
    """Whether a run now would rewrite versions.json."""
    output = snakemake(directory, "-n", *args)
    return "Nothing to be done" not in output


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A committed copy of the workflow with a versions.json made from it."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source, tmp_path / name, ignore=ignore)
        else:
            shutil.copy2(source, tmp_path / name)
    (tmp_path / ".gitignore").write_text("results/\n.snakemake/\n__pycache__/\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "workflow")
    snakemake(tmp_path)
    return tmp_path


def recorded_git(directory: Path) -> dict[str, object]:
    return json.loads((directory / TARGET).read_text())["git"]


def test_rewritten_with_the_code_not_while_a_dirty_tree_is_edited(checkout):
    assert recorded_git(checkout)["dirty"] is False
    assert not reruns(checkout)
    tables = checkout / "analysis" / "core" / "tables.py"
    tables.write_text(tables.read_text() + "# an edit\n")
    assert reruns(checkout), "the tree became dirty: the record says clean"
    snakemake(checkout)
    assert recorded_git(checkout)["dirty"] is True
    tables.write_text(tables.read_text() + "# another edit\n")
    # a digest of the changes would rerun on every edit (and between a test's two invocations)
    assert not reruns(checkout)
    git(checkout, "commit", "-q", "-am", "edits")
    assert reruns(checkout), "a new commit"
    snakemake(checkout)
    assert recorded_git(checkout)["dirty"] is False


def test_rewritten_with_the_config_not_with_execution_settings(checkout):
    execution = checkout / "execution.yaml"
    execution.write_text("preselect: {threads: 1, chunksize: 500}\ntrain: {threads: 1}\n")
    assert not reruns(checkout, "--configfile", str(execution))
    assert reruns(checkout, "--config", "lumi=5000")
