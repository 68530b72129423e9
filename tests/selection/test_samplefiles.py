"""A sample's `files`: a list, a glob or a text file of paths, local or remote (``root://``, read
from a local xrootd server when opted in); a missing file is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from analysis.core.config import load_yaml
from analysis.core.errors import AnalysisError
from analysis.selection import nanoaod
from analysis.selection.nanoaod import check_inputs
from analysis.selection.samplefiles import sample_files
from tests.conftest import DATA, REPO
from tests.digests import root_digest

TT_FILE = "nanoAOD_2015_CMS_Open_Data_ttbar.root"


@pytest.fixture
def nano_files(tmp_path) -> list[Path]:
    """Three empty stand-ins for NanoAOD files (only their names matter here)."""
    files = [tmp_path / f"nano_{i}.root" for i in (2, 10, 1)]
    for path in files:
        path.touch()
    return files


def test_list_glob_and_list_file_give_the_same_files(tmp_path, nano_files):
    # catches an unsorted glob (file order is the output's row order) or a list file read as a
    # single path, with its comment and blank lines kept
    expected = sorted(str(path) for path in nano_files)
    listing = tmp_path / "files.txt"
    listing.write_text("# my sample\n" + "\n".join(expected) + "\n\n")
    assert sample_files("DY", expected) == expected
    assert sample_files("DY", str(tmp_path / "nano_*.root")) == expected
    assert sample_files("DY", str(listing)) == expected
    assert sample_files("DY", [expected[0], str(tmp_path / "nano_1?.root")]) == expected[:2]


def test_remote_files_are_left_to_the_reader():
    # catches a remote URL checked on the local disk (it would always be "missing")
    url = "root://eosuser.cern.ch//eos/user/me/TTbar.root"
    assert sample_files("TT", [url]) == [url]


@pytest.mark.parametrize(
    "entry, where",
    [("{tmp}/missing.root", "the samples file"), ("{tmp}/list.txt", "{tmp}/list.txt")],
)
def test_missing_file_names_itself_in_one_line(tmp_path, entry, where):
    # catches a missing file surfacing later as a Snakemake "MissingInputException" listing
    # every file of every sample, or a list file whose missing entry is not named
    (tmp_path / "list.txt").write_text(f"{tmp_path}/missing.root\n")
    with pytest.raises(AnalysisError) as err:
        sample_files("DY", [entry.format(tmp=tmp_path)])
    message = str(err.value)
    assert "\n" not in message
    assert f"sample 'DY': input file {tmp_path}/missing.root not found" in message
    assert f"(listed in {where.format(tmp=tmp_path)})" in message


def test_glob_without_match_and_missing_list_file_are_clear_errors(tmp_path):
    # catches an empty sample passed on silently
    with pytest.raises(AnalysisError, match=r"sample 'DY': no file matches .*\*\.root"):
        sample_files("DY", str(tmp_path / "*.root"))
    with pytest.raises(AnalysisError, match=r"sample 'DY': file list .*nope\.txt not found"):
        sample_files("DY", str(tmp_path / "nope.txt"))


def test_workflow_expands_a_list_file_and_stops_on_a_missing_file(tmp_path):
    # catches the workflow passing the list file itself to the preselection, or a traceback
    listing = tmp_path / "dy.txt"
    listing.write_text(f"{DATA / 'nano_dy.root'}\n")
    config = _write_config(tmp_path, str(listing), [str(DATA / TT_FILE)])
    planned = _dry_run(config, tmp_path / "results" / "preselect" / "DY" / "nominal.root")
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert f"--files {DATA / 'nano_dy.root'} --settings" in planned.stdout
    listing.write_text(f"{tmp_path}/gone.root\n")
    failed = _dry_run(config, tmp_path / "results" / "preselect" / "DY" / "nominal.root")
    errors = [line for line in (failed.stdout + failed.stderr).splitlines() if "error" in line]
    assert failed.returncode != 0
    assert errors == [
        f"error: sample 'DY': input file {tmp_path}/gone.root not found (listed in {listing}); "
        "fix the path or remove the file from the list"
    ]


def test_workflow_gives_remote_files_to_the_job_not_to_snakemake(tmp_path):
    # catches a root:// URL named as a rule input: Snakemake looks for a local file of that name
    # and stops with MissingInputException before any job
    url = "root://eosuser.cern.ch//eos/user/me/nano_dy_2.root"
    config = _write_config(tmp_path, [str(DATA / "nano_dy.root"), url], [str(DATA / TT_FILE)])
    planned = _dry_run(config, tmp_path / "results" / "preselect" / "DY" / "nominal.root")
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert f"--files {DATA / 'nano_dy.root'} {url} --settings" in planned.stdout


def test_remote_file_without_the_client_names_the_extra(monkeypatch):
    # catches uproot's ImportError surfacing as "replace the file", which is not the cure
    def no_client(path, **_):
        raise ImportError("Install fsspec-xrootd to access xrootd storage system.")

    monkeypatch.setattr(nanoaod.uproot, "open", no_client)
    url = "root://eosuser.cern.ch//eos/user/me/nano_dy.root"
    with pytest.raises(AnalysisError) as err:
        check_inputs([url], "Events", {}, "DY")
    assert str(err.value) == (
        f"sample 'DY': cannot read the remote file {url} without the XRootD client; install it "
        "with pip install -e '.[remote]' (fsspec-xrootd and xrootd)"
    )
    local = str(DATA / "nano_dy.root")  # e.g. a compression library missing: uproot's advice
    with pytest.raises(AnalysisError, match=r"cannot read .*nano_dy\.root \(Install fsspec"):
        check_inputs([local], "Events", {}, "DY")


def test_remote_file_reads_like_the_local_one(xrootd_url):
    # catches a URL that the readers cannot open (no fsspec-xrootd) or that the checks treat as
    # a local path; a missing remote file is one line naming it
    url = f"{xrootd_url}nano_dy.root"
    assert sample_files("DY", [url]) == [url]
    needed = {"Muon_pt": "muon selection"}
    assert check_inputs([url], "Events", needed, "DY") == 40
    assert check_inputs([str(DATA / "nano_dy.root")], "Events", needed, "DY") == 40
    with pytest.raises(AnalysisError) as err:
        check_inputs([f"{xrootd_url}gone.root"], "Events", needed, "DY")
    assert f"{xrootd_url}gone.root" in str(err.value) and "\n" not in str(err.value)


def test_workflow_preselects_files_read_from_an_xrootd_server(tmp_path, xrootd_url):
    # catches remote files that reach the job but are read differently from local ones
    skims = {}
    for where, prefix in (("local", f"{DATA}/"), ("remote", xrootd_url)):
        directory = tmp_path / where
        directory.mkdir()
        config = _write_config(directory, [f"{prefix}nano_dy.root"], [f"{prefix}{TT_FILE}"])
        targets = [directory / "results" / "preselect" / s / "nominal.root" for s in ("DY", "TT")]
        run = _run(config, *targets)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        skims[where] = [root_digest(target) for target in targets]
    assert skims["remote"] == skims["local"]


def _write_config(tmp_path: Path, dy_files: str | list[str], tt_files: list[str]) -> Path:
    """A config of the two real NanoAOD samples (DY, TT) with these files, results in
    ``tmp_path/results``."""
    samples = tmp_path / "samples.yaml"
    config = tmp_path / "config.yaml"
    classes = [{"name": "zl", "processes": ["ZL"]}, {"name": "tt", "processes": ["TT"]}]
    overrides = load_yaml(DATA / "real_nanoaod_config.yaml")
    overrides.update(
        {
            "samples": str(samples),
            "results": str(tmp_path / "results"),
            "train": {"classes": classes},
        }
    )
    config.write_text(yaml.safe_dump(overrides))
    tt = {"type": "mc", "process": "TT", "xsec": 1.0, "files": tt_files}
    dy = {"type": "mc", "process": "ZL", "xsec": 1.0, "files": dy_files}
    samples.write_text(yaml.safe_dump({"samples": {"DY": dy, "TT": tt}}))
    return config


def _run(config: Path, *targets: Path) -> subprocess.CompletedProcess:
    """``snakemake`` of ``targets`` with ``config``, from the repository root."""
    return _snakemake(config, [], targets)


def _dry_run(config: Path, target: Path) -> subprocess.CompletedProcess:
    """``snakemake -n -p`` of one target with ``config``, from the repository root."""
    return _snakemake(config, ["-n", "-p"], [target])


def _snakemake(
    config: Path, options: Sequence[str], targets: Sequence[Path]
) -> subprocess.CompletedProcess:
    """Snakemake with ``config``, ``options`` and ``targets``, from the repository root."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(config)]
    return subprocess.run(
        [*command, *options, "--", *map(str, targets)],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env, check=False,
    )  # fmt: skip
