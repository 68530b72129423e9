"""The input files of a sample: the ``files`` of the samples file, expanded.

``files`` is one entry or a list of entries; an entry is a path or URL, a glob pattern (``*``,
``?``, ``[...]``: its matches, sorted), or a text file (``.txt``) listing one path or URL per line
(blank lines and lines starting with ``#`` are skipped). Relative paths, in the samples file and in
list files alike, are relative to the working directory. Local files must exist: a missing one
stops the workflow with one line naming the file, the sample and where it was listed; remote
files (``root://...``, read through ``fsspec-xrootd``: ``pip install -e '.[remote]'``) are left to
the reader, and a job's rule names only its local files as inputs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from analysis.core.config import is_remote
from analysis.core.errors import AnalysisError

#: Suffix of a text file listing input files.
LIST_SUFFIX = ".txt"


def sample_files(sample: str, files: str | Sequence[str]) -> list[str]:
    """Every input file of ``sample``, in order (``files`` as in the samples file)."""
    entries = [files] if isinstance(files, str) else list(files)
    paths: list[str] = []
    for entry in entries:
        paths.extend(_expand(sample, entry))
    if not paths:
        raise AnalysisError(f"sample '{sample}': `files` lists no file; add its NanoAOD files")
    return paths


def _expand(sample: str, entry: str) -> list[str]:
    """The files of one entry of ``files``."""
    if is_remote(entry):
        return [entry]
    if glob.has_magic(entry):
        matches = sorted(glob.glob(entry))
        if not matches:
            raise AnalysisError(
                f"sample '{sample}': no file matches {entry}; fix the pattern in the samples file"
            )
        return matches
    if entry.endswith(LIST_SUFFIX):
        return [_existing(sample, path, entry) for path in _listed(sample, entry)]
    return [_existing(sample, entry, "the samples file")]


def _listed(sample: str, list_file: str) -> list[str]:
    """The paths a list file names, one per line."""
    try:
        with open(list_file, encoding="utf-8") as lines:
            paths = [line.strip() for line in lines]
    except FileNotFoundError:
        raise AnalysisError(
            f"sample '{sample}': file list {list_file} not found; fix its path in the samples file"
        ) from None
    return [path for path in paths if path and not path.startswith("#")]


def _existing(sample: str, path: str, source: str) -> str:
    """``path`` if it is remote or exists; otherwise a one-line error naming it."""
    if is_remote(path) or os.path.isfile(path):
        return path
    raise AnalysisError(
        f"sample '{sample}': input file {path} not found (listed in {source}); "
        "fix the path or remove the file from the list"
    )


def local_files(paths: Sequence[str]) -> list[str]:
    """The local files of ``paths``: what a rule can name as its input."""
    return [path for path in paths if not is_remote(path)]
