"""The whole workflow through `snakemake --profile cluster` on a real (local, single-node) Slurm.

The same tiny toy analysis runs once locally and once on Slurm, each in its own copy of the
repository (so both write `results/` with the same relative paths); every output must agree, and
every output must come from a Slurm job that Slurm recorded as completed. A third cluster run is
interrupted mid-way (Snakemake killed, its Slurm jobs cancelled) and resumed: it must finish with
the same results without redoing any job whose outputs were complete. Needs a local Slurm
(tests/slurm/setup.sh, the `slurm_cluster` fixture); skipped with the reason where there is none.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml

from tests.conftest import REPO, TINY_TOY_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

#: What a run needs from the repository (the workflow, the package its jobs import, the config
#: and the cluster profile).
WORKFLOW_FILES = ("Snakefile", "workflow", "analysis", "config", "envs", "cluster")

#: Outputs that may differ between two correct runs, and why. Logs hold timings and dask worker
#: addresses; they are checked to exist in both runs, not compared.
DIFFERING = {"logs/": "log files: timings, process ids and dask addresses"}

#: The documented overrides for this CPU-only single-node cluster (README "Running on a cluster"):
#: no GPU for training, job status from squeue (no accounting database here), quick polling, and
#: `--cores` = this node's cores, which caps a group job's width.
CLUSTER_ENV = {"HTT_SLURM_GPUS": "0"}
CLUSTER_ARGS = (
    "--profile", "cluster", "--cores", str(os.cpu_count() or 1),
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2", "--slurm-keep-successful-logs",
    "--slurm-logdir", "slurm_logs",
)  # fmt: skip


def _checkout(directory: Path) -> Path:
    """A copy of the workflow with the tiny toy config in `tiny.yaml`."""
    directory.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    (directory / "tiny.yaml").write_text(yaml.safe_dump({**TINY_TOY_CONFIG, "results": "results"}))
    return directory


def _environment(cluster: bool) -> dict[str, str]:
    """This Python's environment first on PATH, so the jobs' `python -m analysis...` is ours."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_JOB_ID", None)
    return {**env, **CLUSTER_ENV} if cluster else env


def _snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--configfile", "tiny.yaml", *args]


def snakemake(directory: Path, *args: str, cluster: bool) -> str:
    """Run Snakemake in ``directory`` (on Slurm when ``cluster``); its output, or a failure."""
    command = _snakemake_command(*(CLUSTER_ARGS if cluster else ("--cores", "2")), *args)
    result = subprocess.run(
        command, cwd=directory, env=_environment(cluster), capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-5000:]}")
    return output


def result_files(results: Path) -> set[str]:
    """Paths of every file under a results directory, relative to it."""
    return {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()}


def assert_same_results(first: Path, second: Path) -> None:
    """Every file in both directories, and equal: ROOT trees by arrays, JSON by value, others by
    bytes; the files in DIFFERING only have to exist in both."""
    names = result_files(first)
    assert names == result_files(second)
    for name in sorted(names):
        a, b = first / name, second / name
        if name.startswith(tuple(DIFFERING)):
            continue
        if name.endswith(".root"):
            _assert_same_root(a, b)
        elif name.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


def _assert_same_root(a: Path, b: Path) -> None:
    with uproot.open(a) as fa, uproot.open(b) as fb:
        assert sorted(fa.keys()) == sorted(fb.keys()), a
        for key, obj in fa.items():
            if not isinstance(obj, uproot.TTree):
                continue
            left, right = obj.arrays(library="np"), fb[key].arrays(library="np")
            assert left.keys() == right.keys(), f"{a}:{key}"
            for branch in left:
                np.testing.assert_array_equal(left[branch], right[branch], err_msg=f"{a}:{key}")


def slurm_outputs(logdir: Path) -> dict[str, set[str]]:
    """Slurm job id -> the output files that Snakemake's job step declared in that job's log."""
    produced: dict[str, set[str]] = {}
    for log in logdir.rglob("*.log"):
        outputs = produced.setdefault(log.stem, set())
        for line in log.read_text().splitlines():
            if line.startswith("    output: "):
                outputs.update(line.removeprefix("    output: ").split(", "))
    return produced


def slurm_job_states(job_ids: set[str]) -> dict[str, str]:
    """Slurm's own record (scontrol) of each job: its state and exit code."""
    states = {}
    for job_id in job_ids:
        record = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=False
        ).stdout
        state = re.search(r"JobState=(\S+)", record)
        code = re.search(r"ExitCode=(\S+)", record)
        states[job_id] = f"{state[1]} {code[1]}" if state and code else "no record"
    return states


def submitted_jobs(output: str) -> set[str]:
    """Slurm job ids that Snakemake reports having submitted (sbatch's answers)."""
    return set(re.findall(r"has been submitted with SLURM jobid (\d+)", output))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The tiny toy analysis, run locally."""
    directory = _checkout(tmp_path_factory.mktemp("slurm") / "local")
    snakemake(directory, "all", cluster=False)
    return directory / "results"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, slurm_cluster) -> tuple[Path, str]:
    """The same analysis with `snakemake --profile cluster`: its directory and output."""
    directory = _checkout(tmp_path_factory.mktemp("slurm") / "cluster")
    return directory, snakemake(directory, "all", cluster=True)


def test_every_job_ran_through_slurm(cluster_run):
    directory, output = cluster_run
    produced = slurm_outputs(directory / "slurm_logs")
    submitted = submitted_jobs(output)
    assert submitted and set(produced) == submitted, "one Slurm log per submitted job"
    states = slurm_job_states(submitted)
    assert set(states.values()) == {"COMPLETED 0:0"}, states
    results = directory / "results"
    outputs = {name for name in result_files(results) if not name.startswith("logs/")}
    made_in_slurm = {
        str(Path(path).relative_to("results")) for paths in produced.values() for path in paths
    }
    assert outputs and outputs <= made_in_slurm, sorted(outputs - made_in_slurm)
    # fewer Slurm jobs than Snakemake jobs: the small per-sample jobs were grouped
    jobs = int(re.search(r"(\d+) of (\d+) steps \(100%\) done", output)[2])
    assert len(submitted) < jobs - 1  # - 1: `all` runs locally
    assert "group_friends" in output


def test_cluster_results_equal_local_results(local_run, cluster_run):
    directory, _ = cluster_run
    assert_same_results(local_run, directory / "results")


def _incomplete(directory: Path) -> set[str]:
    """Outputs that Snakemake marked as being written when it stopped."""
    marks = directory / ".snakemake" / "incomplete"
    if not marks.exists():
        return set()
    # a marker's path is the urlsafe base64 of the output's path, split into "@"-prefixed parts
    paths = set()
    for mark in marks.rglob("*"):
        if mark.is_file() and mark.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in mark.relative_to(marks).parts)
            paths.add(base64.urlsafe_b64decode(encoded).decode())
    return paths


def _cancel_jobs(prefix: str) -> None:
    """Cancel this run's Slurm jobs (their names start with ``prefix``), as `scancel` would."""
    listing = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True
    ).stdout
    ids = [line.split()[0] for line in listing.splitlines() if line.split()[1].startswith(prefix)]
    if ids:
        subprocess.run(["scancel", *ids], check=True)


def test_killed_run_resumes_without_redoing_complete_jobs(tmp_path, local_run, slurm_cluster):
    directory = _checkout(tmp_path / "resume")
    prefix = f"htt{uuid.uuid4().hex[:8]}"
    command = _snakemake_command(*CLUSTER_ARGS, "--slurm-jobname-prefix", prefix, "all")
    log = (tmp_path / "interrupted.log").open("w")
    process = subprocess.Popen(
        command, cwd=directory, env=_environment(True), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    # interrupt once the preselection is under way: some jobs finished, others running or queued
    results = directory / "results"
    deadline = time.monotonic() + 900
    while len(list(results.glob("preselect/*/nominal.root"))) < 3:
        assert process.poll() is None, (tmp_path / "interrupted.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the preselection did not start within 15 minutes"
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)  # no clean shutdown: locks and markers stay behind
    process.wait()
    _cancel_jobs(prefix)
    log.close()

    incomplete = _incomplete(directory)
    complete = {
        name: (results / name).stat().st_mtime_ns
        for name in result_files(results)
        if not name.startswith("logs/") and f"results/{name}" not in incomplete
    }
    assert complete and len(complete) < len(result_files(local_run)), "stopped mid-way"

    snakemake(directory, "--unlock", cluster=True)
    output = snakemake(directory, "all", cluster=True)
    assert_same_results(local_run, results)
    redone = sorted(n for n, mtime in complete.items() if (results / n).stat().st_mtime_ns != mtime)
    assert redone == [], "complete outputs were made again"
    assert "Nothing to be done" not in output
