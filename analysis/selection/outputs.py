"""The preselection's outputs per variation: per-chunk rows in a scratch directory merged into
``<variation>.root`` (TTree ``Events``), and ``<variation>.cutflow.json``."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from analysis.core.io import EVENT_KEYS, atomic_path, write_json
from analysis.selection.nanoaod import generator_sumw
from analysis.selection.skim import FEATURES

log = logging.getLogger(__name__)


@contextlib.contextmanager
def scratch_directory(output_dir: Path, variations: Sequence[str]) -> Iterator[Path]:
    """A scratch directory in ``output_dir`` with one folder per variation, removed afterwards.

    Scratch left by an earlier attempt that was killed outright is removed first.
    """
    for stale in output_dir.glob(".chunks-*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=".chunks-", dir=output_dir))
    try:
        for variation in variations:
            (scratch / variation).mkdir()
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_outputs(
    sample: str,
    files: Sequence[str],
    variations: Sequence[str],
    result: Mapping[str, Any],
    sumw: Mapping[str, Any],
    scratch: Path,
    output_dir: Path,
    steps: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Merge each variation's chunks into its skim and write its cutflow (``steps`` in order);
    return the cutflows."""
    cutflows = {}
    for variation in variations:
        cutflows[variation] = variation_cutflow(sample, variation, files, result, sumw, steps)
        merge_chunks(
            scratch / variation, sorted(result["chunks"]), output_dir / f"{variation}.root"
        )
        write_json(output_dir / f"{variation}.cutflow.json", cutflows[variation])
        _warn_if_empty(sample, variation, cutflows[variation])
    return cutflows


def merge_chunks(chunk_dir: Path, chunks: Sequence[str], output: Path) -> None:
    """Concatenate per-chunk rows into one TTree, chunk by chunk (bounded memory)."""
    with atomic_path(output) as tmp, uproot.recreate(tmp) as fout:
        tree = None
        for chunk in chunks:
            with np.load(chunk_dir / chunk) as rows:
                columns = {name: rows[name] for name in rows.files}
            if tree is None:
                tree = fout.mktree(
                    "Events", {name: values.dtype for name, values in columns.items()}
                )
            if len(columns["event"]):
                tree.extend(columns)
        if tree is None:  # no chunk at all: an input without events
            fout.mktree("Events", {key: np.float32 for key in (*EVENT_KEYS, *FEATURES)})


def sum_of_weights(
    result: Mapping[str, Any],
    files: Sequence[str],
    branches: Mapping[str, Any],
    simulation: bool,
) -> dict[str, Any]:
    """Normalisation inputs for the friend trees: generator-weight sums and their source.

    They come from the ``Runs`` trees (branch ``branches.gen_event_sumw``) where the files have
    them, else from the processed events.
    """
    if not simulation:
        return {"source": "data"}
    gen_event_sumw = branches["gen_event_sumw"]
    from_runs = generator_sumw(files, gen_event_sumw)
    processed = result["sumw"]
    if from_runs is None:
        log.warning(
            "no Runs tree with %s: normalising to the processed events' genWeight sum",
            " or ".join(gen_event_sumw),
        )
    return {
        "source": "Runs tree" if from_runs is not None else "processed events",
        "genEventSumw": from_runs if from_runs is not None else processed["genWeight"],
        "processed": {k: v for k, v in sorted(processed.items())},
    }


def variation_cutflow(
    sample: str,
    variation: str,
    files: Sequence[str],
    result: Mapping[str, Any],
    sumw: Mapping[str, Any],
    steps: Sequence[str],
) -> dict[str, Any]:
    """The cutflow JSON of one variation: events and weighted events after each of ``steps``."""
    counts = result["cutflow"][variation]
    return {
        "sample": sample,
        "variation": variation,
        "files": list(files),
        "cuts": [{"name": cut, **counts[cut]} for cut in steps],
        "sumw": sumw,
    }


def _warn_if_empty(sample: str, variation: str, cutflow: Mapping[str, Any]) -> None:
    if cutflow["cuts"][-1]["events"] == 0:
        log.warning(
            "sample '%s' variation '%s': the selection kept 0 events; wrote an empty skim",
            sample,
            variation,
        )
