"""Shared fixtures: the default config, small toy NanoAOD files, and preselected skims."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from analysis.core.config import load_yaml
from tests import xrootd_server

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

#: A tiny toy analysis layered on config/config.yaml (add `results`): the whole DAG in minutes.
TINY_TOY_CONFIG: dict[str, Any] = {
    "lumi": 300.0,
    "toydata": {"scale": 0.05},
    "preselect": {"chunksize": 2000},
    "train": {"network": {"hidden": [32]}, "max_epochs": 8, "patience": 3},
    "inference": {"scan": {"points": 11, "chunk_size": 11}, "ranking": {"chunk_size": 40}},
    "plots": {"templates": False},
}


def _start_rank(item: pytest.Item) -> int:
    """When a test's module starts under pytest-xdist (lower first): the Slurm run, the workflow
    runs, then the unit tests."""
    if item.get_closest_marker("slurm"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The workflow runs start first and the unit tests fill in beside them: a Snakemake run
    leaves a core idle much of the time (serial stages), and the longest module started last
    would end the suite alone. xdist's two workers (pyproject's addopts) each take a whole module
    (`--dist loadfile`), so a module's fixtures (often a whole workflow run) are made once."""
    items.sort(key=_start_rank)


@pytest.fixture(scope="session")
def default_config() -> Iterator[dict[str, Any]]:
    """The shipped config/config.yaml (copy it before changing it).

    Shared by the whole session, so a test that changes it in place would change every later
    test's defaults; the teardown check turns such a leak into an error naming this fixture.
    """
    config = load_yaml(REPO / "config" / "config.yaml")
    yield config
    assert config == load_yaml(REPO / "config" / "config.yaml"), (
        "a test changed the session's default_config in place: copy it before changing it"
    )


@pytest.fixture(scope="session")
def default_samples() -> dict[str, Any]:
    """The shipped samples file's `samples` mapping."""
    return load_yaml(REPO / "config" / "samples.yaml")["samples"]


def merge_config(config: dict, changes: dict) -> None:
    """Merge ``changes`` into ``config`` in place, the way Snakemake merges a --configfile."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge_config(config[key], value)
        else:
            config[key] = value


def toy_settings(config: dict[str, Any], samples: dict[str, Any], events: int) -> dict[str, Any]:
    """Toy-generator settings with every simulated sample shrunk to ``events`` events."""
    small = copy.deepcopy(samples)
    for sample in small.values():
        if "events" in sample.get("toy", {}):
            sample["toy"]["events"] = events
    return {
        "samples": small,
        "toydata": config["toydata"],
        "lumi": config["lumi"],
        "variations": config["variations"],
        "tau_id_sf": {
            **config["weights"]["tau_id_sf"],
            "file": str(REPO / config["weights"]["tau_id_sf"]["file"]),
        },
    }


def preselect_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config sections the preselection reads (a deep copy, safe to modify)."""
    return copy.deepcopy(
        {key: config[key] for key in ("branches", "selection", "variations", "weights")}
    )


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory, default_config, default_samples) -> dict[str, Path]:
    """Small toy NanoAOD files (ZTT, TT and W with 4000 events each), generated once."""
    from analysis.selection.toydata import generate_sample

    directory = tmp_path_factory.mktemp("toy")
    settings = toy_settings(default_config, default_samples, events=4000)
    files = {}
    for sample in ("ZTT", "TT", "W"):
        files[sample] = directory / f"{sample}.root"
        generate_sample(sample, settings, files[sample])
    return files


@pytest.fixture(scope="session")
def ztt_skims(tmp_path_factory, toy_files, default_config, default_samples) -> Path:
    """The ZTT toy file preselected with the default config (all variations), in-process."""
    from analysis.selection.preselect import run_preselection

    output = tmp_path_factory.mktemp("skims")
    run_preselection(
        "ZTT",
        default_samples["ZTT"],
        [str(toy_files["ZTT"])],
        preselect_settings(default_config),
        output,
        chunksize=1500,
        dask={"mode": "none"},
    )
    return output


#: Why the Slurm tests skipped, and how to run them.
SLURM_OPT_IN = (
    "Slurm tests are opt-in: HTT_TEST_SLURM=1 installs (Debian, root) and starts a local "
    "single-node Slurm, or uses the one that answers, and submits the test workflow to it"
)


def opted_in(feature: str) -> bool:
    """Whether this test run may set up ``feature`` (``SLURM``: install, configure, start or
    submit to Slurm; ``XROOTD``: start an xrootd server): ``HTT_TEST_<feature>=1``, or
    ``REQUIRE_<feature>=1``, which also makes a set-up that fails a test failure."""
    return "1" in (os.environ.get(f"HTT_TEST_{feature}"), os.environ.get(f"REQUIRE_{feature}"))


def unavailable(feature: str, message: str) -> NoReturn:
    """Stop a test whose opted-in ``feature`` could not be set up: a failure under
    ``REQUIRE_<feature>=1``, else a skip, with ``message``."""
    if os.environ.get(f"REQUIRE_{feature}") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """A running local Slurm (tests/slurm/setup.sh), stopped at the end if the fixture started it.

    Opt-in: setting up Slurm may install packages, write /etc/slurm and start daemons, and a Slurm
    that already answers (a cluster's login node) would receive the test jobs. So nothing is
    touched unless HTT_TEST_SLURM=1 (or REQUIRE_SLURM=1, which .ci/run sets); otherwise the Slurm
    tests skip with a line saying how to enable them. Where Slurm cannot be set up (not Debian, not
    root, no package index) the tests skip with the setup script's reason, unless REQUIRE_SLURM=1,
    where that is a failure. Returns the setup's last line (which partition and node are up).
    """
    if not opted_in("SLURM"):
        pytest.skip(SLURM_OPT_IN)
    setup = REPO / "tests" / "slurm" / "setup.sh"
    try:
        result = subprocess.run(
            ["bash", str(setup)], capture_output=True, text=True, timeout=900, check=False
        )
        reason = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        failed = result.returncode != 0
    except (OSError, subprocess.TimeoutExpired) as err:
        reason, failed = [str(err)], True
    if failed:
        unavailable("SLURM", f"no local Slurm cluster: {' '.join(reason) or 'setup.sh failed'}")
    yield result.stdout.strip().splitlines()[-1]
    if "started " in result.stdout:  # only what this session started; a running Slurm stays
        subprocess.run(
            ["bash", str(REPO / "tests" / "slurm" / "teardown.sh")], timeout=120, check=False
        )


@pytest.fixture(scope="session")
def xrootd_url() -> Iterator[str]:
    """``root://localhost:PORT//``: a local xrootd server serving copies of the real NanoAOD
    files of tests/data (tests/xrootd_server.py), stopped at the end. Opt-in, like Slurm: a plain
    pytest starts no server; where one cannot start, the tests skip with the reason, or fail
    with REQUIRE_XROOTD=1."""
    if not opted_in("XROOTD"):
        pytest.skip(xrootd_server.OPT_IN)
    reason = xrootd_server.missing()
    stack = contextlib.ExitStack()
    if reason is None:
        files = [DATA / "nano_dy.root", DATA / "nanoAOD_2015_CMS_Open_Data_ttbar.root"]
        try:
            url = stack.enter_context(xrootd_server.serving(files))
        except RuntimeError as err:
            reason = str(err)
    if reason is not None:
        unavailable("XROOTD", f"no local xrootd server: {reason}")
    with stack:
        yield url


#: Where an era file names each official correction file (config keys), and the kind of file
#: analysis/selection/correction_files.py writes in its stead.
CORRECTION_FILE_KEYS = {
    ("weights", "corrections", "pileup"): "pileup",
    ("weights", "corrections", "muon_id"): "muon",
    ("weights", "corrections", "muon_iso"): "muon",
    ("weights", "corrections", "muon_trigger"): "muon",
    ("weights", "corrections", "tau_id"): "tau",
    ("weights", "corrections", "btag"): "btag",
    ("variations", "tau_es_correction"): "tau",
    ("variations", "jer"): "jme",
    ("variations", "jes_sources"): "jme",
    ("selection", "jet", "id_correction"): "jet_id",
}


def correction_files_overlay(files: dict[str, Path], jet_id: bool = True) -> dict[str, Any]:
    """A config overlay pointing every correction file of an era file at the generated ``files``
    (``correction_files.write_all``); ``jet_id``: also the jet ID's (eras without Jet_jetId)."""
    overlay: dict[str, Any] = {}
    for keys, kind in CORRECTION_FILE_KEYS.items():
        if keys[-1] == "id_correction" and not jet_id:
            continue
        section = overlay
        for key in keys:
            section = section.setdefault(key, {})
        section["file"] = str(files[kind])
    return overlay


def with_correction_branches(source: Path, output: Path) -> Path:
    """A copy of a toy NanoAOD file with the simulation branches the official-format corrections
    read and the toy lacks: ``Jet_hadronFlavour`` (from the b-tag score), ``Jet_genJetIdx`` and
    ``GenJet_*`` (every second jet matched, its generator jet 5% softer), the rho branches of
    NanoAOD v9 and v12+ and the jet constituent fractions of the jet ID. Deterministic."""
    import awkward as ak
    import numpy as np
    import uproot

    with uproot.open(source) as fin:
        events = fin["Events"].arrays(library="ak")
        runs = fin["Runs"].arrays(library="ak")
    fields = events.fields
    counted = [f[1:] for f in fields if f.startswith("n") and any(
        g.startswith(f"{f[1:]}_") for g in fields)]  # fmt: skip
    tree: dict[str, Any] = {}
    for name in counted:
        prefix = f"{name}_"
        tree[name] = ak.zip(
            {f.removeprefix(prefix): events[f] for f in fields if f.startswith(prefix)}
        )
    grouped = {f"n{name}" for name in counted}
    for f in fields:
        if f not in grouped and f.split("_", 1)[0] not in counted:
            tree[f] = events[f]
    jets = tree["Jet"]
    score = jets.btagDeepFlavB if "btagDeepFlavB" in jets.fields else jets.btagUParTAK4B
    index = ak.local_index(jets.pt)
    flavour = ak.where(score > 0.5, 5, ak.where(score > 0.2, 4, 0))
    matched = index % 2 == 0
    jets = ak.with_field(jets, ak.values_astype(flavour, np.int32), "hadronFlavour")
    jets = ak.with_field(jets, ak.values_astype(ak.where(matched, index // 2, -1), np.int16),
                         "genJetIdx")  # fmt: skip
    fractions = {"chHEF": 0.5, "neHEF": 0.2, "chEmEF": 0.1, "neEmEF": 0.1, "muEF": 0.0}
    for name, value in fractions.items():
        jets = ak.with_field(
            jets, ak.values_astype(ak.ones_like(jets.pt) * value, np.float32), name
        )
    jets = ak.with_field(jets, ak.values_astype(index % 3 + 1, np.uint8), "chMultiplicity")
    jets = ak.with_field(jets, ak.values_astype(index % 2 + 1, np.uint8), "neMultiplicity")
    tree["Jet"] = jets
    gen = jets[matched]
    tree["GenJet"] = ak.zip({"pt": gen.pt * 0.95, "eta": gen.eta, "phi": gen.phi,
                             "mass": gen.mass})  # fmt: skip
    rho = np.asarray(ak.to_numpy(events["PV_npvs"]), dtype=np.float32) * 0.8
    tree["fixedGridRhoFastjetAll"] = rho
    tree["Rho_fixedGridRhoFastjetAll"] = rho
    with uproot.recreate(output) as fout:
        types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in tree.items()}
        fout.mktree("Events", types, field_name=lambda collection, f: f"{collection}_{f}")
        fout["Events"].extend(tree)
        fout["Runs"] = {name: runs[name] for name in runs.fields}
    return output
