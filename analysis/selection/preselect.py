"""Preselection: a coffea processor over NanoAOD selecting mu+tau_h pairs, one sample per call.

One read of the input gives the nominal skim and one skim per object-level shape variation (tau_h
and jet energy scale, unclustered MET): :mod:`analysis.selection.processor`. Chunks run on a dask
cluster (local by default, an existing scheduler or Slurm through dask-jobqueue when configured:
:mod:`analysis.selection.executor`); each chunk writes its rows to a scratch file and the driver
concatenates them in (file, entry) order, so memory is bounded by the chunk size and the output
order is reproducible (:mod:`analysis.selection.outputs`).

Outputs per sample and variation: ``<variation>.root`` (TTree ``Events``: event keys, features,
per-event weight inputs) and ``<variation>.cutflow.json``.

Usage: ``python -m analysis.selection.preselect --sample NAME --sample-spec JSON --files ...
--settings JSON --output-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from analysis.core.config import is_simulation, sample_variations
from analysis.core.errors import cli_main
from analysis.selection.executor import run_processor, with_empty_defaults
from analysis.selection.nanoaod import check_inputs, required_branches
from analysis.selection.outputs import scratch_directory, sum_of_weights, write_outputs
from analysis.selection.processor import SkimProcessor

log = logging.getLogger(__name__)


def run_preselection(
    sample_name: str,
    sample: Mapping[str, Any],
    files: Sequence[str],
    settings: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    chunksize: int,
    workers: int = 1,
    dask: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Preselect one sample: write ``<variation>.root`` and ``<variation>.cutflow.json``.

    Args:
        sample_name: the sample's name in the samples file (for messages and outputs).
        sample: its entry in the samples file (``type``, ``alternative``, ``treename``, ...).
        files: its NanoAOD files, in order (the order of the output rows).
        settings: config sections ``branches``, ``selection``, ``variations``, ``weights``.
        output_dir: directory receiving the skims and cutflows.
        chunksize: events per chunk.
        workers: dask workers for the local cluster.
        dask: the ``preselect.dask`` config section (default: local cluster).

    Returns:
        The cutflow per variation, as written to the JSON files.
    """
    treename = sample.get("treename", "Events")
    simulation = is_simulation(sample)
    events = check_inputs(files, treename, required_branches(settings, simulation), sample_name)
    variations = sample_variations(sample, settings["variations"])
    if settings["branches"]["jet_id"] is None and not settings["selection"]["jet"].get(
        "id_correction"
    ):
        log.warning("branches.jet_id is null: jets are counted without any jet ID requirement")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with scratch_directory(output_dir, variations) as scratch:
        proc = SkimProcessor(
            settings, sample_name, sample, variations, str(scratch), _file_index(files)
        )
        fileset = {sample_name: {"files": {path: treename for path in files}}}
        result = run_processor(
            proc, fileset, treename, events, chunksize, workers, dask or {"mode": "local"}
        )
        result = with_empty_defaults(result, variations, proc.steps)
        sumw = sum_of_weights(result, files, settings["branches"], simulation)
        return write_outputs(
            sample_name, files, variations, result, sumw, scratch, output_dir, proc.steps
        )


def _file_index(files: Sequence[str]) -> dict[str, int]:
    """The position of each input file, so that rows are ordered by (file, entry)."""
    return {path: index for index, path in enumerate(files)}


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Preselect one sample (coffea + dask).")
    parser.add_argument("--sample", required=True, help="sample name in the samples file")
    parser.add_argument("--sample-spec", required=True, help="the sample's entry, as JSON")
    parser.add_argument("--files", required=True, nargs="+", help="input NanoAOD files")
    parser.add_argument("--settings", required=True, help="config sections, as JSON")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--dask-mode", default="local", choices=("local", "scheduler", "slurm", "none")
    )
    parser.add_argument("--dask-address", default="none", help="scheduler address (scheduler mode)")
    parser.add_argument("--dask-jobs", type=int, default=1, help="worker jobs (slurm mode)")
    args = parser.parse_args(argv)
    cutflows = run_preselection(
        args.sample,
        json.loads(args.sample_spec),
        args.files,
        json.loads(args.settings),
        args.output_dir,
        args.chunksize,
        args.workers,
        {
            "mode": args.dask_mode,
            "address": None if args.dask_address == "none" else args.dask_address,
            "jobs": args.dask_jobs,
        },
    )
    for variation, cutflow in cutflows.items():
        last = cutflow["cuts"][-1]
        log.info(
            "%s %s: %d events selected (weighted %.6g)",
            args.sample,
            variation,
            last["events"],
            last["weighted"],
        )


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
