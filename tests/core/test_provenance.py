"""The provenance record (analysis/core/provenance.py): git state of the code, with and without a
checkout, and the versions.json command line."""

from __future__ import annotations

import json
import subprocess

import pytest

from analysis.core.provenance import GitState, environment_sha256, git_state, main, sha256_of


def git(directory, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path):
    """A scratch git repository with one committed file."""
    directory = tmp_path / "repo"
    directory.mkdir()
    git(directory, "init", "-q")
    (directory / "code.py").write_text("x = 1\n")
    git(directory, "add", "code.py")
    git(directory, "commit", "-q", "-m", "first")
    return directory


def test_commit_and_dirty_flag(checkout):
    commit = git(checkout, "rev-parse", "HEAD").strip()
    assert git_state(checkout) == GitState(commit, False)
    # untracked files (a report, scratch output) do not make the tree dirty; edits do
    (checkout / "scratch.txt").write_text("")
    assert git_state(checkout) == GitState(commit, False)
    (checkout / "code.py").write_text("x = 2\n")
    assert git_state(checkout) == GitState(commit, True)


def test_no_checkout_is_none(tmp_path, checkout):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) is None
    # an unpacked tarball inside some other repository must not report that repository's commit
    unpacked = checkout / "htautau-0.1.0"
    unpacked.mkdir()
    assert git_state(unpacked) is None


def test_without_git_installed_is_none(checkout, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert git_state(checkout) is None  # not an exception: the run goes on


def test_digests_are_stable_and_key_order_free():
    assert sha256_of({"a": 1, "b": [1, 2]}) == sha256_of({"b": [1, 2], "a": 1})
    assert sha256_of({"a": 1}) != sha256_of({"a": 2})
    assert environment_sha256() == environment_sha256()


def test_versions_json(tmp_path):
    output = tmp_path / "versions.json"
    state = json.dumps({"commit": "abc", "dirty": True})
    assert main([str(output), "--git", state, "--config-sha256", "f00"]) == 0
    record = json.loads(output.read_text())
    assert record["git"] == {"commit": "abc", "dirty": True} and record["config_sha256"] == "f00"
    assert record["packages"]["numpy"] and record["python"].count(".") == 2
    assert main([str(output), "--git", "null"]) == 0
    assert json.loads(output.read_text())["git"] is None


def test_malformed_git_state_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "versions.json"), "--git", "{}"]) == 1
    assert capsys.readouterr().err == "error: --git: '{}' is not a JSON {commit, dirty} or null\n"
    assert not (tmp_path / "versions.json").exists()
