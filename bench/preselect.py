"""Benchmark of the preselection: throughput against a plain uproot read, and peak memory.

Prints, for a toy ZTT sample at 1x and 4x size:
- events/s per core of our preselection (in-process, one core: coffea + all shape variations), as a
  ratio to a plain ``uproot`` read of the same branches measured in the same run (the reference);
- events/s with the default local dask cluster on all cores, as a ratio to the same reference;
- peak resident memory of an in-process preselection: bounded by the chunk size, so 4x input
  should need about the same memory as 1x.

Usage: python bench/preselect.py [--events 50000] [--chunksize 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uproot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.core.config import load_yaml  # noqa: E402
from analysis.selection.nanoaod import required_branches  # noqa: E402
from analysis.selection.preselect import run_preselection  # noqa: E402
from analysis.selection.toydata import generate_sample  # noqa: E402
from tests.conftest import preselect_settings, toy_settings  # noqa: E402


def _uproot_read(path: Path, branches: list[str], chunksize: int) -> float:
    start = time.perf_counter()
    for _ in uproot.iterate(f"{path}:Events", branches, step_size=chunksize, library="ak"):
        pass
    return time.perf_counter() - start


def _preselect(path: Path, settings: dict, chunksize: int, workers: int, mode: str) -> float:
    sample = {"type": "mc", "process": "ZTT", "xsec": 1.0}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_preselection(
            "ZTT", sample, [str(path)], settings, out, chunksize, workers, {"mode": mode}
        )
        return time.perf_counter() - start


def _peak_memory_mb(path: Path, chunksize: int) -> float:
    """Peak RSS of a fresh process preselecting ``path`` in-process (one core)."""
    code = (
        "import json,resource,sys,tempfile; sys.path.insert(0, sys.argv[1]);"
        "from bench.preselect import _child; _child(sys.argv[2], int(sys.argv[3]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(path), str(chunksize)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def _child(path: str, chunksize: int) -> None:
    config = load_yaml(REPO / "config" / "config.yaml")
    _preselect(Path(path), preselect_settings(config), chunksize, 1, "none")
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events of the 1x sample")
    parser.add_argument("--chunksize", type=int, default=25_000)
    args = parser.parse_args()
    config = load_yaml(REPO / "config" / "config.yaml")
    settings = preselect_settings(config)
    branches = sorted(required_branches(settings, simulation=True))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'size':>4} {'events':>8} {'uproot ev/s':>12} {'ours 1 core':>12} {'ratio':>6} "
            f"{'dask ev/s':>10} {'ratio':>6} {'peak MB':>8}"
        )
        for factor in (1, 4):
            events = args.events * factor
            path = Path(tmp) / f"ZTT_{factor}x.root"
            generate_sample(
                "ZTT",
                toy_settings(
                    config, load_yaml(REPO / "config" / "samples.yaml")["samples"], events
                ),
                path,
            )
            reference = events / _uproot_read(path, branches, args.chunksize)
            single = events / _preselect(path, settings, args.chunksize, 1, "none")
            parallel = events / _preselect(path, settings, args.chunksize, cores, "local")
            peak = _peak_memory_mb(path, args.chunksize)
            print(
                f"{factor:>3}x {events:>8} {reference:>12.0f} {single:>12.0f} "
                f"{single / reference:>6.3f} {parallel:>10.0f} {parallel / reference:>6.3f} "
                f"{peak:>8.0f}"
            )
    print(
        f"ratios: our events/s over a plain uproot read of the same {len(branches)} branches; "
        f"dask: local cluster with {cores} workers, startup included; "
        "7 skims (nominal + 6 shape variations) per read"
    )


if __name__ == "__main__":
    main()
