"""Provenance of a results directory: the software versions that produced it.

Written by the workflow as ``<results>/versions.json`` so that a reviewer regenerating a figure can
compare environments; numbers are only expected to be identical for identical versions.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

from analysis.core.errors import cli_main
from analysis.core.io import write_json

#: Distributions whose versions can change results.
PACKAGES = (
    "htautau-workflow", "snakemake", "coffea", "uproot", "awkward", "dask", "distributed",
    "dask-awkward", "numpy", "correctionlib", "torch", "pyhf", "iminuit", "hist", "boost-histogram",
    "matplotlib", "mplhep", "pandas",
)  # fmt: skip


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict[str, object]:
    """Python, platform and package versions."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record the software versions of a run.")
    parser.add_argument("output", help="JSON file to write")
    write_json(parser.parse_args(argv).output, provenance())


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
