"""File helpers shared by all stages: atomic writes, JSON, ROOT trees and friend alignment."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from analysis.core.errors import AnalysisError

EVENT_KEYS = ("run", "luminosityBlock", "event")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that is renamed onto it only on success.

    A failed or interrupted stage therefore never leaves a half-written file that looks complete,
    and an existing good file is only replaced by a complete new one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # left by an earlier attempt that was killed outright (SIGKILL, node failure); only one job
    # writes a given output at a time, so these are nobody's
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` that replaces it only on success (the
    directory version of :func:`atomic_path`, for outputs made of several files)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON with sorted keys (stable bytes for reproducibility)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found; run the stage that produces it") from None
    except json.JSONDecodeError as err:
        raise AnalysisError(f"{path}: not valid JSON ({err}); delete it and rerun") from None


def write_tree(
    path: str | os.PathLike[str], columns: Mapping[str, np.ndarray], treename: str = "Events"
) -> None:
    """Write flat columns as one ROOT TTree, atomically.

    An empty selection still writes a valid tree with the right branches and zero entries.
    """
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as fout:
            branch_types = {name: np.asarray(values).dtype for name, values in columns.items()}
            tree = fout.mktree(treename, branch_types)
            if len(columns) and len(next(iter(columns.values()))):
                tree.extend({name: np.asarray(values) for name, values in columns.items()})


def read_tree(
    path: str | os.PathLike[str], branches: list[str] | None = None, treename: str = "Events"
) -> dict[str, np.ndarray]:
    """Read flat branches of a TTree into numpy arrays, with a clear error for a missing branch."""
    try:
        tree = uproot.open(path)[treename]
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found; run the stage that produces it") from None
    except KeyError:
        raise AnalysisError(
            f"{path}: has no tree '{treename}'; rerun the stage that wrote it"
        ) from None
    missing = sorted(set(branches or []) - set(tree.keys()))
    if missing:
        raise AnalysisError(f"{path}: missing branch {missing[0]!r}; rerun the stage that wrote it")
    return tree.arrays(branches, library="np")


def check_aligned(
    base: Mapping[str, np.ndarray], friend: Mapping[str, np.ndarray], what: str
) -> None:
    """Raise unless ``friend`` has the same events in the same order as ``base``.

    Alignment is checked on the event keys (run, luminosityBlock, event), never assumed.
    """
    n_base, n_friend = len(base["event"]), len(friend["event"])
    if n_base != n_friend:
        raise AnalysisError(
            f"{what}: {n_friend} entries but its skim has {n_base}; rerun the friends stage"
        )
    for key in EVENT_KEYS:
        if not np.array_equal(base[key], friend[key]):
            first = int(np.argmax(np.asarray(base[key]) != np.asarray(friend[key])))
            raise AnalysisError(
                f"{what}: {key} differs from its skim at entry {first}; "
                "the friend tree is out of date, rerun the friends stage"
            )


def read_with_friends(
    skim_path: str | os.PathLike[str],
    friend_paths: list[str | os.PathLike[str]],
    branches: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Read a skim and its friend trees side by side, checking every friend's alignment.

    Args:
        skim_path: the skim written by the preselection.
        friend_paths: friend trees of that skim (same entries, same order).
        branches: columns to return (from any of the trees); all when None.

    Returns:
        The requested columns; a column present in several trees is taken from the first.
    """
    columns = read_tree(skim_path)
    for path in friend_paths:
        friend = read_tree(path)
        check_aligned(columns, friend, str(path))
        for name, values in friend.items():
            columns.setdefault(name, values)
    if branches is None:
        return columns
    missing = [name for name in branches if name not in columns]
    if missing:
        raise AnalysisError(
            f"{skim_path}: column {missing[0]!r} is in neither the skim nor its friends; "
            "check the feature name in the config"
        )
    return {name: columns[name] for name in branches}
