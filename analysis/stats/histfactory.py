"""Export the pyhf workspace as HistFactory XML and ROOT (``snakemake xml``), with pyhf's json2xml.

The output directory holds what ``pyhf json2xml`` writes, with paths relative to it so that it
can be moved: ``FitConfig.xml`` (the combination and its measurements),
``config/FitConfig_<channel>.xml`` (one per channel), ``data/data.root`` (every histogram) and
``HistFactorySchema.dtd``. Run
``hist2workspace FitConfig.xml`` inside it for a RooFit workspace, or read it back with
``pyhf xml2json FitConfig.xml --basedir <dir>``. While the analysis is blinded the data
histograms are the workspace's observations, the Asimov prediction
(:mod:`analysis.stats.blinding`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import pyhf.writexml

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_directory, read_json

log = logging.getLogger(__name__)

#: pyhf json2xml's defaults: top-level file name, channel and data directories
PREFIX, SPEC_DIR, DATA_DIR = "FitConfig", "config", "data"


def write_xml(spec: Mapping[str, Any], output_dir: str | Path) -> Path:
    """Write a workspace as HistFactory XML + ROOT into ``output_dir`` (replaced atomically).

    Returns:
        The top-level XML file.

    Raises:
        AnalysisError: the specification is not a valid pyhf workspace.
    """
    try:
        pyhf.Workspace(dict(spec))
    except pyhf.exceptions.InvalidSpecification as err:
        raise AnalysisError(f"workspace: not a valid pyhf workspace ({err})") from None
    with atomic_directory(output_dir) as tmp:
        # pyhf writes the paths it is given into the XML: relative ones keep the export movable
        with contextlib.chdir(tmp):
            Path(SPEC_DIR).mkdir()
            Path(DATA_DIR).mkdir()
            top = pyhf.writexml.writexml(dict(spec), SPEC_DIR, DATA_DIR, PREFIX)
            Path(f"{PREFIX}.xml").write_bytes(top)
        _relative_root_paths(tmp)
    return Path(output_dir) / f"{PREFIX}.xml"


def _relative_root_paths(directory: Path) -> None:
    """Make the ROOT file's path in the channel files relative: pyhf writes the absolute path
    uproot reports for it, which would point into the temporary directory."""
    absolute = f'"{(directory / DATA_DIR / "data.root").resolve()}"'
    for channel in sorted((directory / SPEC_DIR).glob("*.xml")):
        text = channel.read_text(encoding="utf-8").replace(absolute, f'"{DATA_DIR}/data.root"')
        if str(directory.resolve()) in text:
            raise AnalysisError(f"{channel.name}: pyhf wrote a path into the export directory")
        channel.write_text(text, encoding="utf-8")


def read_xml(output_dir: str | Path) -> pyhf.Workspace:
    """The workspace read back from a directory written by :func:`write_xml` (pyhf's readxml)."""
    import pyhf.readxml  # needs uproot; only this reader does

    directory = Path(output_dir)
    # readxml takes every histogram's errors as sqrt(content): a negative bin only warns
    with np.errstate(invalid="ignore"):
        spec = pyhf.readxml.parse(directory / f"{PREFIX}.xml", directory)
    return pyhf.Workspace(spec)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The pyhf workspace as HistFactory XML + ROOT.")
    parser.add_argument("--workspace", required=True, help="pyhf JSON workspace")
    parser.add_argument("--output-dir", required=True, help="directory of the XML and ROOT files")
    args = parser.parse_args(argv)
    spec = read_json(args.workspace)
    top = write_xml(spec, args.output_dir)
    log.info("HistFactory XML of %d channels: %s", len(spec["channels"]), top)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
