"""The tiny toy analysis, run once per test session and shared by the workflow tests.

The tests that need more than its targets (the figures, a workspace with other settings) work on
a copy of its results, so each test still sees the outputs that ``tests/data/output_digests.json``
pins, and the upstream stages (toy data, preselection, training, histograms) run only once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.workflow.test_workflow import TINY_TARGETS, snakemake, tiny_toy_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> tuple[Path, Path]:
    """(a scratch directory, the results directory) of the tiny toy run to TINY_TARGETS.

    Made once for all pytest-xdist workers (the pattern of xdist's documentation: the first
    worker to need it runs it under a file lock in the workers' common temp directory, the others
    wait and reuse it). Tests read it and write beside it, never into it.
    """
    common = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        common = common.parent
    tmp = common / "tiny_run"
    results = tmp / "results"
    with FileLock(common / "tiny_run.lock"):
        if not (tmp / "complete").exists():
            shutil.rmtree(tmp, ignore_errors=True)  # a run that failed half-way
            tmp.mkdir()
            snakemake(*TINY_TARGETS, "--configfile", str(tiny_toy_config(tmp, results)))
            (tmp / "complete").touch()
    return tmp, results


def copy_results(results: Path, destination: Path, rerun: tuple[str, ...] = ()) -> Path:
    """A copy of a run's results (modification times kept, so Snakemake finds them up to date)
    without the stages in ``rerun`` and without versions.json, which the next run remakes.

    The copies carry no Snakemake records: a stage whose settings differ in the next run would
    not rerun by itself, so name it (and what follows from it) in ``rerun``.
    """
    left_out = {"versions.json", *rerun}

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [name for name in names if name in left_out] if Path(directory) == results else []

    shutil.copytree(results, destination, symlinks=True, ignore=ignore)
    return destination
