"""Content digests of a results directory, to hold refactors to "behaviour unchanged".

ROOT files are digested by content (tree arrays, histogram values/variances/edges): uproot writes
times and UUIDs into their headers, so their bytes differ between identical runs. JSON outputs are
digested canonically without the keys that record where and with what they were made (package
versions, input paths). Models are digested by bytes (torch writes them reproducibly).

The committed reference, ``tests/data/output_digests.json``, is regenerated on purpose only, by a
command separate from the tests (state the reason in the commit)::

    python -m tests.digests RESULTS_DIR > tests/data/output_digests.json

where RESULTS_DIR holds a run of ``tests.workflow.test_workflow.TINY_TARGETS`` with the tiny toy
config (``tests.conftest.TINY_TOY_CONFIG``). The reference keeps the package versions of that run
(its ``versions.json``) beside the digests: a new release of a numerical dependency (awkward,
vector, numpy, iminuit) may change the last bits of the skims and of what is trained and fitted on
them, and the test then names the packages whose versions moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import uproot

#: Keys that record provenance (software versions, git state, input paths), not results.
PROVENANCE_KEYS = frozenset({"versions", "provenance", "files", "git", "config_sha256"})

#: Output files digested, as globs relative to the results directory.
PATTERNS = (
    "preselect/*/*.root",
    "preselect/*/*.cutflow.json",
    "friends/*/*.root",
    "scores/*/*.root",
    "train/fold*/model.pt",
    "train/diagnostics.json",
    "train/taylor_ranking.json",
    "histograms/histograms.root",
    "histograms/binning.json",
    "histograms/blinding.json",
    "workspace/workspace.json",
    "workspace/pruned.json",
    "fit/fit.json",
    "fit/pulls.json",
    "fit/ranking.json",
)


def _without_provenance(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k not in PROVENANCE_KEYS}
    if isinstance(value, list):
        return [_without_provenance(v) for v in value]
    return value


def _update_array(digest: Any, name: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
    digest.update(array.tobytes())


def root_digest(path: Path) -> str:
    """Digest of every tree's arrays and every histogram's edges, values and variances."""
    digest = hashlib.sha256()
    with uproot.open(path) as file:
        for key in sorted(file.keys(recursive=True, cycle=False)):
            item = file[key]
            if isinstance(item, uproot.TTree):
                for branch, array in sorted(item.arrays(library="np").items()):
                    _update_array(digest, f"{key}/{branch}", np.asarray(array))
            elif hasattr(item, "values") and hasattr(item, "axes"):
                _update_array(digest, f"{key}/edges", item.axis().edges(flow=True))
                _update_array(digest, f"{key}/values", item.values(flow=True))
                variances = item.variances(flow=True)
                if variances is not None:
                    _update_array(digest, f"{key}/variances", variances)
    return digest.hexdigest()


def json_digest(path: Path) -> str:
    """Digest of a JSON document without its provenance keys, canonically serialised."""
    document = _without_provenance(json.loads(path.read_text()))
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    if path.suffix == ".root":
        return root_digest(path)
    if path.suffix == ".json":
        return json_digest(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(results: Path) -> dict[str, str]:
    """``relative path -> digest`` of every output matched by :data:`PATTERNS`."""
    paths = sorted({path for pattern in PATTERNS for path in results.glob(pattern)})
    return {path.relative_to(results).as_posix(): file_digest(path) for path in paths}


def reference(results: Path) -> dict[str, Any]:
    """The committed reference of a run: its digests and the package versions that made them."""
    versions = json.loads((results / "versions.json").read_text())
    return {"packages": versions["packages"], "digests": digests(results)}


def moved_packages(reference_packages: dict[str, str], results: Path) -> list[str]:
    """``name old -> new`` for each package whose version differs between the reference and
    the run in ``results`` (its ``versions.json``)."""
    packages = json.loads((results / "versions.json").read_text())["packages"]
    return [
        f"{name} {reference_packages.get(name)} -> {packages.get(name)}"
        for name in sorted(set(reference_packages) | set(packages))
        if reference_packages.get(name) != packages.get(name) and name != "htautau-workflow"
    ]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.digests RESULTS_DIR > tests/data/output_digests.json")
    print(json.dumps(reference(Path(sys.argv[1])), indent=1, sort_keys=True))
