"""The sbatch command lines `snakemake --profile cluster` issues for a GPU training job and for
its retries, without a Slurm: fake Slurm commands (tests/slurm/fake/slurm.py) come first on PATH,
record every call and report each submitted job as OUT_OF_MEMORY, so that Snakemake resubmits it
until its retries (cluster/config.yaml) are spent.

This is a real run of Snakemake with the Slurm executor plugin on the repository's workflow and
profiles (in a copy under a temporary directory, like tests/workflow/test_slurm.py): only the
Slurm commands are fake. The training inputs are empty files made in the copy, so that the one
job to submit is `train_fold` (nothing runs: the fake sbatch only answers a job id).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.core.config import load_yaml
from tests.conftest import REPO
from tests.workflow.test_slurm import _checkout

pytestmark = pytest.mark.slow

FAKE = REPO / "tests" / "slurm" / "fake" / "slurm.py"
COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare", "scancel",
            "srun", "sstat")  # fmt: skip
#: A site with a GPU partition, a GPU model and two GPUs per training job (cluster/config.yaml).
SITE = {
    "HTT_SLURM_PARTITION": "short",
    "HTT_SLURM_ACCOUNT": "htt",
    "HTT_SLURM_GPU_PARTITION": "gpuq",
    "HTT_SLURM_GPU_MODEL": "a100",
    "HTT_SLURM_GPUS": "2",
}
TARGET = "results/train/fold0/model.pt"
CONFIG = load_yaml(REPO / "config" / "config.yaml")
#: Quick status polls and no wait for outputs that a fake job never writes.
QUICK = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
         "--latency-wait", "1")  # fmt: skip


def _environment(fake_bin: Path, log: Path) -> dict[str, str]:
    """The fakes first on PATH, then this Python's environment; the site settings above only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HTT_SLURM_")}
    env.pop("SLURM_JOB_ID", None)
    path = os.pathsep.join([str(fake_bin), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**env, **SITE, "PATH": path, "FAKE_SLURM_LOG": str(log)}


def _snakemake(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=directory, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip


def _make_inputs_of_training(directory: Path, env: dict[str, str]) -> None:
    """Every file upstream of TARGET (from `snakemake --summary`) as an empty file, all with the
    same, current time: complete for Snakemake, so only the training job is left to run."""
    summary = _snakemake(directory, env, "--cores", "1", "--summary", TARGET)
    assert summary.returncode == 0, summary.stderr[-3000:]
    rows = [line.split("\t") for line in summary.stdout.splitlines()[1:] if "\t" in line]
    upstream = [Path(row[0]) for row in rows if row[2] != "train_fold"]
    assert len(upstream) > 10, summary.stdout
    now = time.time()
    for path in upstream:
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).touch()
        os.utime(directory / path, (now, now))


@pytest.fixture(scope="module")
def submissions(tmp_path_factory) -> tuple[list[list[str]], str]:
    """The arguments of every sbatch call of the run, and the run's output."""
    tmp = tmp_path_factory.mktemp("cluster_submission")
    directory = _checkout(tmp / "workflow")
    fake_bin = tmp / "bin"
    fake_bin.mkdir()
    for command in COMMANDS:
        (fake_bin / command).symlink_to(FAKE)
    log = tmp / "slurm_calls.jsonl"
    env = _environment(fake_bin, log)
    _make_inputs_of_training(directory, env)
    run = _snakemake(directory, env, "--profile", "cluster", TARGET, *QUICK)
    output = run.stdout + run.stderr
    # every attempt ends OUT_OF_MEMORY: the run fails once the retries are spent
    assert run.returncode != 0, output[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [args for command, args in calls if command == "sbatch"], output


def _option(args: list[str], name: str) -> str:
    """The value of ``name`` in an sbatch call (``-p x`` or ``--gpus=x``)."""
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no {name} in sbatch {args}")


def test_training_job_asks_for_the_gpus_of_the_site(submissions):
    """The training job goes to the GPU partition with the GPU model and count of the
    environment, charged to the account: fails if the profile's train_fold resources stop
    reaching sbatch (a renamed rule, a YTE condition turned the wrong way, gpu_model dropped)."""
    calls, output = submissions
    assert calls, output[-3000:]
    assert {_option(args, "--comment") for args in calls} == {"rule_train_fold_wildcards_0"}
    for args in calls:
        assert _option(args, "-p") == "gpuq"
        assert _option(args, "--gpus") == "a100:2"
        assert _option(args, "-A") == "htt"
        assert _option(args, "--cpus-per-task") == str(
            load_yaml(REPO / "config" / "config.yaml")["train"]["threads"]
        )


def test_a_retried_job_asks_for_more_memory_and_time(submissions):
    """One submission per attempt (1 + the profile's retries), each with the training job's
    memory and runtime times the attempt: fails if retries stop, or a retry asks for the same
    memory that killed the attempt before (resources not computed per attempt)."""
    calls, _ = submissions
    train = CONFIG["train"]
    retries = int(yaml.safe_load((REPO / "cluster" / "config.yaml").read_text())["retries"])
    attempts = range(1, retries + 2)
    assert [_option(args, "--mem") for args in calls] == [
        str(train["mem_mb"] * n) for n in attempts
    ]
    assert [_option(args, "-t") for args in calls] == [str(train["runtime"] * n) for n in attempts]
    wraps = [_option(args, "--wrap") for args in calls]
    assert [f"--attempt {n} " in wrap for n, wrap in zip(attempts, wraps, strict=True)] == [
        True
    ] * len(wraps)
