"""The whole workflow through `snakemake --profile cluster` on a real (local, single-node) Slurm.

The same tiny toy analysis runs once locally and once on Slurm, each in its own copy of the
repository (so both write `results/` with the same relative paths). The cluster run is interrupted
mid-way (Snakemake killed, its Slurm jobs cancelled) and resumed. Every output must agree with the
local run, every output must come from a Slurm job that Slurm recorded as completed, and the resumed
run must not redo a job whose outputs were complete. Needs a local Slurm (tests/slurm/setup.sh, the
`slurm_cluster` fixture), and opt-in (HTT_TEST_SLURM=1): skipped with the reason otherwise.
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
from typing import NamedTuple

import awkward as ak
import pytest
import uproot
import yaml

from tests.conftest import REPO, SLURM_OPT_IN, TINY_TOY_CONFIG, merge_config, opted_in

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    # skip before any fixture runs (the local reference run alone takes minutes)
    pytest.mark.skipif(not opted_in("SLURM"), reason=SLURM_OPT_IN),
]

#: What a run needs from the repository (the workflow, the package its jobs import, the config
#: and the cluster profile).
WORKFLOW_FILES = ("Snakefile", "profiles", "workflow", "analysis", "config", "envs", "cluster")

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


#: One sample per training class (W alone for `misc`) and the pseudo-data: every rule runs, with
#: fewer jobs (no alternative samples).
SAMPLES = ("ggH", "qqH", "ZTT", "TT", "W", "data")


def _checkout(directory: Path) -> Path:
    """A copy of the workflow whose config/config.yaml is the tiny toy analysis on fewer samples."""
    directory.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    samples = yaml.safe_load((REPO / "config" / "samples.yaml").read_text())["samples"]
    subset = {"samples": {name: samples[name] for name in SAMPLES}}
    (directory / "config" / "samples.yaml").write_text(yaml.safe_dump(subset))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    merge_config(config, {**TINY_TOY_CONFIG, "results": "results"})
    config["train"]["classes"] = [
        {"name": name, "processes": processes}
        for name, processes in (
            ("ggH", ["ggH"]), ("qqH", ["qqH"]), ("ztt", ["ZTT"]), ("tt", ["TT"]), ("misc", ["W"])
        )
    ]  # fmt: skip
    (directory / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def _environment(cluster: bool) -> dict[str, str]:
    """This Python's environment first on PATH, so the jobs' `python -m analysis...` is ours."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_JOB_ID", None)
    return {**env, **CLUSTER_ENV} if cluster else env


def _snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


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
    """Paths of every file under a results directory, relative to it (hidden ones included)."""
    return {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()}


def _hidden(name: str) -> bool:
    """A running job's scratch or temporary file (a component starting with a dot)."""
    return any(part.startswith(".") for part in Path(name).parts)


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
            left, right = obj.arrays(), fb[key].arrays()  # awkward: jagged NanoAOD branches too
            assert left.fields == right.fields, f"{a}:{key}"
            for branch in left.fields:
                assert ak.array_equal(left[branch], right[branch]), f"{a}:{key}:{branch}"


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


def finished_jobs(logdir: Path, job_ids: set[str]) -> set[str]:
    """Jobs that made all their outputs: those Slurm recorded as completed, and those cancelled
    after their job step had finished. The interruption's `scancel` can reach a job between the
    end of its Snakemake step (outputs written, incomplete-markers cleared) and the end of the
    batch script; Slurm records it as cancelled, and Snakemake rightly keeps its outputs."""
    states = slurm_job_states(job_ids)
    done = set()
    for job_id, state in states.items():
        if state == "COMPLETED 0:0":
            done.add(job_id)
        elif state.startswith("CANCELLED") and any(
            STEP_DONE.search(log.read_text()) for log in logdir.rglob(f"{job_id}.log")
        ):
            done.add(job_id)
    return done


#: The last line a Snakemake job step writes to its Slurm log once its outputs are complete.
STEP_DONE = re.compile(r"\d+ of \d+ steps \(100%\) done")


def submitted_jobs(output: str) -> set[str]:
    """Slurm job ids that Snakemake reports having submitted (sbatch's answers)."""
    return set(re.findall(r"has been submitted with SLURM jobid (\d+)", output))


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


def _made_by(name: str, outputs: set[str]) -> bool:
    """Whether a file is one of ``outputs`` or lies in a directory output among them."""
    return name in outputs or any(name.startswith(f"{output}/") for output in outputs)


def _cancel_jobs(prefix: str) -> None:
    """Cancel this run's Slurm jobs (their names start with ``prefix``), as `scancel` would."""
    listing = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True
    ).stdout
    ids = [line.split()[0] for line in listing.splitlines() if line.split()[1].startswith(prefix)]
    if ids:
        subprocess.run(["scancel", *ids], check=True)


def _queue() -> str:
    """Slurm's queue with the reason each pending job waits, and the node's state."""
    commands = (["squeue", "-o", "%i %j %T %C %m %R"], ["sinfo", "-N", "-o", "%N %T %C %m %E"])
    return "\n".join(
        subprocess.run(c, capture_output=True, text=True, check=False).stdout for c in commands
    )


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The tiny toy analysis, run locally: its results directory."""
    directory = _checkout(tmp_path_factory.mktemp("slurm") / "local")
    snakemake(directory, "all", cluster=False)
    return directory / "results"


class ClusterRun(NamedTuple):
    """A cluster run that was killed mid-way and resumed."""

    directory: Path
    output: str  # Snakemake's output, both parts
    complete: dict[str, int]  # outputs complete at the interruption -> their mtime (ns)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, slurm_cluster) -> ClusterRun:
    """`snakemake --profile cluster all`, killed with its Slurm jobs once the preselection is under
    way, then `--unlock`ed and rerun to the end, as README "Running on a cluster" describes."""
    tmp = tmp_path_factory.mktemp("slurm")
    directory = _checkout(tmp / "cluster")
    prefix = f"htt{uuid.uuid4().hex[:8]}"
    command = _snakemake_command(*CLUSTER_ARGS, "--slurm-jobname-prefix", prefix, "all")
    log_path = tmp / "interrupted.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=directory, env=_environment(True), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        # interrupt with some preselection jobs done and others running or queued
        results = directory / "results"
        deadline = time.monotonic() + 900
        while len(list(results.glob("preselect/*/nominal.cutflow.json"))) < 2:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"the preselection did not start in 15 minutes; Slurm's queue:\n{_queue()}\n"
                f"Snakemake:\n{log_path.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        time.sleep(5)  # let Slurm record the first finished jobs as completed
        os.killpg(process.pid, signal.SIGKILL)  # no clean shutdown: lock and markers stay
        process.wait()
        _cancel_jobs(prefix)
    incomplete = _incomplete(directory)
    # complete: outputs of jobs that had finished before the interruption (a job still running
    # when it was cancelled may have written some of its outputs already)
    produced = slurm_outputs(directory / "slurm_logs")
    done = finished_jobs(directory / "slurm_logs", set(produced))
    finished = {
        str(Path(path).relative_to("results"))
        for job, paths in produced.items()
        if job in done
        for path in paths
    }
    complete = {
        name: (results / name).stat().st_mtime_ns
        for name in result_files(results)
        if not name.startswith("logs/")
        and not _hidden(name)
        and f"results/{name}" not in incomplete
        and _made_by(name, finished)
    }
    snakemake(directory, "--unlock", cluster=True)
    output = log_path.read_text() + snakemake(directory, "all", cluster=True)
    return ClusterRun(directory, output, complete)


def test_every_job_ran_through_slurm(cluster_run):
    produced = slurm_outputs(cluster_run.directory / "slurm_logs")
    submitted = submitted_jobs(cluster_run.output)
    assert submitted and set(produced) <= submitted, "a Slurm log per submitted job"
    states = slurm_job_states(set(produced))
    finished = finished_jobs(cluster_run.directory / "slurm_logs", set(produced))
    # the interruption cancelled the jobs that were running; every other job completed
    assert {state.split()[0] for job, state in states.items() if job not in finished} <= {
        "CANCELLED"
    }
    results = cluster_run.directory / "results"
    outputs = {name for name in result_files(results) if not name.startswith("logs/")}
    made_in_slurm = {
        str(Path(path).relative_to("results")) for job in finished for path in produced[job]
    }
    not_made = sorted(name for name in outputs if not _made_by(name, made_in_slurm))
    assert outputs and not not_made, not_made
    # the small per-sample jobs were grouped: fewer Slurm jobs than Snakemake jobs
    assert "group_friends" in cluster_run.output
    jobs = int(re.findall(r"\n(?:total)\s+(\d+)", cluster_run.output)[0])
    assert len(submitted) < jobs


def test_cluster_results_equal_local_results(local_run, cluster_run):
    assert_same_results(local_run, cluster_run.directory / "results")


def test_resumed_run_kept_complete_outputs(local_run, cluster_run):
    results = cluster_run.directory / "results"
    complete = cluster_run.complete
    assert complete and len(complete) < len(result_files(local_run)), "stopped mid-way"
    assert any(name.startswith("preselect/") for name in complete)
    redone = sorted(n for n, mtime in complete.items() if (results / n).stat().st_mtime_ns != mtime)
    assert redone == [], "complete outputs were made again"


def _dask_worker_jobs(since: float) -> dict[str, str]:
    """Slurm's records of dask-jobqueue worker jobs submitted after ``since`` (epoch seconds)."""
    listing = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=False
    ).stdout
    jobs = {}
    for record in listing.splitlines():
        fields = dict(f.split("=", 1) for f in record.split() if "=" in f)
        if fields.get("JobName") != "dask-worker":
            continue
        submitted = time.mktime(time.strptime(fields["SubmitTime"], "%Y-%m-%dT%H:%M:%S"))
        if submitted >= int(since):
            jobs[fields["JobId"]] = fields["JobState"]
    return jobs


def test_preselection_on_dask_workers_in_slurm_jobs(
    slurm_cluster, toy_files, default_config, default_samples, tmp_path, monkeypatch
):
    """`preselect.dask.mode: slurm`: the chunks run on dask-jobqueue worker jobs that Slurm
    schedules, and the skims equal an in-process run's."""
    import dask.config

    from analysis.selection.preselect import run_preselection
    from tests.conftest import preselect_settings

    monkeypatch.chdir(REPO)  # the workers import `analysis` from their working directory
    monkeypatch.setenv("PATH", _environment(False)["PATH"])
    start = time.time()
    outputs = {}
    # the worker jobs' Slurm output files go to the test's directory, not the repository
    with dask.config.set({"jobqueue.slurm.log-directory": str(tmp_path / "worker_logs")}):
        for mode in ("slurm", "none"):
            outputs[mode] = tmp_path / mode
            run_preselection(
                "ZTT", default_samples["ZTT"], [str(toy_files["ZTT"])],
                preselect_settings(default_config), outputs[mode], chunksize=1500,
                dask={"mode": mode, "jobs": 2},
            )  # fmt: skip
    assert list((tmp_path / "worker_logs").glob("*.out")), "worker jobs wrote their Slurm output"
    workers = _dask_worker_jobs(start)
    assert len(workers) == 2 and set(workers.values()) <= {"COMPLETED", "CANCELLED"}, workers
    assert_same_results(outputs["none"], outputs["slurm"])
