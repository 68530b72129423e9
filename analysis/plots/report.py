"""Provenance items of the Snakemake report: a software-versions table and the resolved config.

The report then shows, next to the figures, which versions and which configuration made them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence

import yaml

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import read_json
from analysis.core.tables import write_text


def versions_table(versions: Mapping[str, object]) -> str:
    """Tab-separated ``package<TAB>version`` lines (nested entries flattened with dots)."""
    rows = ["package\tversion"]

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value):
                walk(f"{prefix}.{key}" if prefix else str(key), value[key])
        else:
            rows.append(f"{prefix}\t{'not installed' if value is None else value}")

    walk("", versions)
    return "\n".join(rows) + "\n"


@cli_main
def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the versions table and the config copy."""
    parser = argparse.ArgumentParser(description="Provenance items of the report.")
    parser.add_argument("--versions", required=True, help="versions.json of the results")
    parser.add_argument("--config", required=True, help="the resolved config as JSON")
    parser.add_argument("--versions-table", required=True)
    parser.add_argument("--config-copy", required=True)
    args = parser.parse_args(argv)
    versions = read_json(args.versions)
    if not isinstance(versions, Mapping):
        raise AnalysisError(f"{args.versions}: expected a mapping of versions; rerun `versions`")
    write_text(args.versions_table, versions_table(versions))
    write_text(args.config_copy, yaml.safe_dump(json.loads(args.config), sort_keys=False))


if __name__ == "__main__":
    raise SystemExit(main())
