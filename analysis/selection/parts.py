"""Samples of many files preselected in several jobs (``preselect.files_per_job``) and merged.

A sample with more files than ``files_per_job`` is split, in file order, into parts of that many
files (the last one shorter); each part is an ordinary preselection job writing its skims and
cutflows to ``preselect_parts/<sample>/<part>/``. The merge concatenates the parts' skims in part
order, so rows keep the (file, entry) order of a single job, and adds their cutflows: event counts
and weighted sums per cut, the generator-weight sums, and the file lists. The merged skims equal
those of one job; weighted sums may differ from it in the last digits (another order of addition).

Usage: ``python -m analysis.selection.parts --sample NAME --parts DIR [DIR ...] --variations
nominal ... --output-dir DIR``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import uproot

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


def split_files(files: Sequence[str], files_per_job: int | None) -> list[list[str]]:
    """The files of each job of a sample, in order; one job when ``files_per_job`` is null."""
    if not files_per_job or len(files) <= files_per_job:
        return [list(files)]
    return [list(files[i : i + files_per_job]) for i in range(0, len(files), files_per_job)]


def part_name(index: int) -> str:
    """The directory name of part ``index``: zero-padded, so lexical order is part order."""
    return f"{index:04d}"


def merge_cutflows(sample: str, cutflows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The cutflow of a sample from those of its parts (in part order)."""
    first = cutflows[0]
    names = [cut["name"] for cut in first["cuts"]]
    for index, cutflow in enumerate(cutflows):
        if [cut["name"] for cut in cutflow["cuts"]] != names:
            raise AnalysisError(
                f"sample '{sample}': part {part_name(index)} has other cutflow steps than part "
                f"0000; rerun its preselection with the same config"
            )
    cuts = [
        {
            "name": name,
            "events": sum(c["cuts"][i]["events"] for c in cutflows),
            "weighted": sum(c["cuts"][i]["weighted"] for c in cutflows),
        }
        for i, name in enumerate(names)
    ]
    return {
        "sample": first["sample"],
        "variation": first["variation"],
        "files": [path for cutflow in cutflows for path in cutflow["files"]],
        "cuts": cuts,
        "sumw": merge_sumw([cutflow["sumw"] for cutflow in cutflows]),
    }


def merge_sumw(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Generator-weight sums of the parts added; the source is shared, or says it is mixed."""
    if parts[0]["source"] == "data":
        return {"source": "data"}
    sources = sorted({part["source"] for part in parts})
    processed: dict[str, float] = {}
    for part in parts:
        for key, value in part["processed"].items():
            processed[key] = processed.get(key, 0.0) + value
    return {
        "source": sources[0] if len(sources) == 1 else " and ".join(sources),
        "genEventSumw": sum(part["genEventSumw"] for part in parts),
        "processed": dict(sorted(processed.items())),
    }


def merge_skims(inputs: Sequence[Path], output: Path) -> None:
    """Concatenate the ``Events`` trees of ``inputs`` in order (one part in memory at a time).

    The tree's columns are those of the first part with events (a part whose files have no events
    has only the placeholder columns of an empty skim).
    """
    trees = []
    for path in inputs:
        with uproot.open(path) as fin:
            events = fin["Events"]
            types = {name: events[name].interpretation.numpy_dtype for name in events.keys()}
            trees.append((path, events.num_entries, types))
    filled = [entry for entry in trees if entry[1]] or trees[:1]
    with atomic_path(output) as tmp, uproot.recreate(tmp) as fout:
        tree = fout.mktree("Events", filled[0][2])
        for path, entries, _ in filled:
            if entries:
                with uproot.open(path) as fin:
                    tree.extend(fin["Events"].arrays(list(filled[0][2]), library="np"))


def merge_parts(
    sample: str,
    part_dirs: Sequence[str | os.PathLike[str]],
    variations: Sequence[str],
    output_dir: str | os.PathLike[str],
) -> dict[str, dict[str, Any]]:
    """Merge the parts' skims and cutflows of every variation into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    parts = [Path(part) for part in part_dirs]
    cutflows = {}
    for variation in variations:
        merge_skims(
            [part / f"{variation}.root" for part in parts], output_dir / f"{variation}.root"
        )
        cutflows[variation] = merge_cutflows(
            sample, [read_json(part / f"{variation}.cutflow.json") for part in parts]
        )
        write_json(output_dir / f"{variation}.cutflow.json", cutflows[variation])
    return cutflows


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge the preselection parts of one sample.")
    parser.add_argument("--sample", required=True)
    parser.add_argument("--parts", required=True, nargs="+", help="part directories, in order")
    parser.add_argument("--variations", required=True, nargs="+")
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    cutflows = merge_parts(args.sample, args.parts, args.variations, args.output_dir)
    nominal = cutflows[args.variations[0]]["cuts"][-1]
    log.info("%s: %d parts merged, %d events selected", args.sample, len(args.parts),
             nominal["events"])  # fmt: skip


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
