"""Provenance of a results directory: the code, software and config that produced it.

Written by the workflow as ``<results>/versions.json`` so that a reviewer regenerating a figure can
compare environments; numbers are only expected to be identical for identical versions. The git
state of the code (commit, and whether tracked files differ from it) is ``null`` where the code is
not a git checkout (a tarball) or git is not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import write_json

#: Distributions whose versions can change results.
PACKAGES = (
    "htautau-workflow", "snakemake", "coffea", "uproot", "awkward", "dask", "distributed",
    "dask-awkward", "numpy", "correctionlib", "torch", "pyhf", "iminuit", "hist", "boost-histogram",
    "matplotlib", "mplhep", "pandas",
)  # fmt: skip

#: The repository of this code (when it is a checkout): the directory above ``analysis/``.
REPOSITORY = Path(__file__).resolve().parents[2]


class GitState(NamedTuple):
    """The commit of the code and whether tracked files differ from it (untracked files aside)."""

    commit: str
    dirty: bool


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_of(document: Any) -> str:
    """SHA-256 of a JSON-serialisable document, independent of key order."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def environment_sha256() -> str:
    """A digest of every installed distribution and its version: changes with any install."""
    installed = {
        (dist.metadata["Name"] or "").lower(): dist.version for dist in metadata.distributions()
    }
    return sha256_of(sorted(installed.items()))


def _git(directory: Path, *args: str) -> str:
    """Output of a read-only git command (no optional locks: never writes the index)."""
    return subprocess.run(
        ["git", "--no-optional-locks", *args], cwd=directory, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


def git_state(directory: str | Path = REPOSITORY) -> GitState | None:
    """The git state of the checkout at ``directory``; None without git or outside a checkout
    whose top level is ``directory`` (an unpacked tarball inside some other repository)."""
    directory = Path(directory).resolve()
    try:
        if Path(_git(directory, "rev-parse", "--show-toplevel")).resolve() != directory:
            return None
        commit = _git(directory, "rev-parse", "HEAD")
        changes = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(commit, bool(changes))


def provenance(git: GitState | None, config_sha256: str | None) -> dict[str, object]:
    """Python, platform and package versions, the code's git state and the config digest."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git._asdict() if git else None,
        "config_sha256": config_sha256,
    }


def _parse_git(text: str) -> GitState | None:
    """``--git``: a JSON {commit, dirty} or null."""
    try:
        document = json.loads(text)
        return None if document is None else GitState(str(document["commit"]), document["dirty"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise AnalysisError(f"--git: {text!r} is not a JSON {{commit, dirty}} or null") from None


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record the software versions of a run.")
    parser.add_argument("output", help="JSON file to write")
    parser.add_argument(
        "--git", default=None, help="the git state as JSON {commit, dirty} (default: look it up)"
    )
    parser.add_argument("--config-sha256", default=None, help="digest of the run's config")
    args = parser.parse_args(argv)
    git = git_state() if args.git is None else _parse_git(args.git)
    write_json(args.output, provenance(git, args.config_sha256))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
