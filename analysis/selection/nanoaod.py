"""NanoAOD conventions and inputs: branch names as NanoEvents columns, the branches the
preselection needs, early checks of the input files, and generator-weight sums of ``Runs`` trees.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np
import uproot

from analysis.core.config import is_remote, weight_columns
from analysis.core.errors import AnalysisError
from analysis.core.io import EVENT_KEYS

#: ``Tau_genPartFlav`` of a genuine hadronic tau decay.
GENUINE_TAU = 5


def column(events: ak.Array, branch: str) -> ak.Array:
    """The NanoEvents column of a flat NanoAOD branch: ``HLT_IsoMu24`` is ``events.HLT.IsoMu24``."""
    if branch in events.fields:
        return events[branch]
    collection, name = branch.split("_", 1)
    return events[collection][name]


def field(branch: str) -> str:
    """The NanoEvents field of a NanoAOD branch name, e.g. ``Tau_idDeepTau2017v2p1VSjet``."""
    return branch.split("_", 1)[1]


def required_branches(settings: Mapping[str, Any], simulation: bool) -> dict[str, str]:
    """NanoAOD branches the preselection reads, each mapped to what needs it (for messages)."""
    branches, selection = settings["branches"], settings["selection"]
    met = branches["met"]
    needed = {key: "event keys" for key in EVENT_KEYS}
    for name in ("pt", "eta", "phi", "mass", "charge"):
        needed[f"Muon_{name}"] = "muon selection"
        needed[f"Tau_{name}"] = "tau selection"
    for name in ("pt", "eta", "phi", "mass"):
        needed[f"Jet_{name}"] = "jet selection"
    for key in ("muon_id", "muon_iso", "tau_id", "tau_antimu", "tau_decay_mode", "btag"):
        needed[branches[key]] = f"config key branches.{key}"
    if branches["jet_id"] is not None:
        needed[branches["jet_id"]] = "config key branches.jet_id (null: no jet ID cut)"
    needed[f"{met}_pt"] = needed[f"{met}_phi"] = "config key branches.met"
    if settings["variations"].get("met_unclustered") and simulation:
        for branch in branches["met_unclustered"]["branches"]:
            needed[branch] = (
                "config key branches.met_unclustered (or set variations.met_unclustered to false)"
            )
    for path in selection["trigger"]["paths"]:
        needed[path] = "config key selection.trigger.paths"
    for flag in selection["met_filters"]:
        needed[flag] = "config key selection.met_filters"
    if selection["jet"].get("id_correction"):
        for name in ("chHEF", "neHEF", "chEmEF", "neEmEF", "muEF", "chMultiplicity",
                     "neMultiplicity"):  # fmt: skip
            needed[f"Jet_{name}"] = "config key selection.jet.id_correction"
    if simulation:
        needed.update(_correction_branches(settings))
        needed[branches["tau_genmatch"]] = "config key branches.tau_genmatch"
        for skim_column, source in weight_columns(settings["weights"]).items():
            branch = source[0] if isinstance(source, tuple) else source
            needed[branch] = f"weights config (skim column {skim_column})"
    return needed


def _correction_branches(settings: Mapping[str, Any]) -> dict[str, str]:
    """Branches of simulation that the official-format corrections read."""
    needed = {}
    corrections = settings["weights"].get("corrections") or {}
    if corrections.get("pileup"):
        needed["Pileup_nTrueInt"] = "config key weights.corrections.pileup"
    if corrections.get("btag"):
        needed["Jet_hadronFlavour"] = "config key weights.corrections.btag"
    if settings["variations"].get("jer"):
        reason = "config key variations.jer (generator-jet matching of the smearing)"
        for branch in ("Jet_genJetIdx", "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass"):
            needed[branch] = reason
        needed[settings["branches"]["rho"]] = "config keys variations.jer and branches.rho"
    return needed


def check_inputs(
    files: Sequence[str], treename: str, needed: Mapping[str, str], sample: str
) -> int:
    """Fail early, in one line, if a file is unreadable or lacks a needed branch; return the
    number of events in all files (for the progress lines), read while the files are open."""
    events = 0
    for path in files:
        keys, entries = _branch_names(path, treename, sample)
        events += entries
        for branch, reason in needed.items():
            if branch not in keys:
                close = difflib.get_close_matches(branch, keys, n=3, cutoff=0.6)
                hint = f" (this file has {', '.join(close)})" if close else ""
                raise AnalysisError(
                    f"sample '{sample}': {path} has no branch '{branch}', "
                    f"needed by {reason}{hint}; "
                    "point the config at a branch this file has or drop the feature"
                )
    return events


def _branch_names(path: str, treename: str, sample: str) -> tuple[set[str], int]:
    """The branches of ``treename`` in ``path`` and its number of entries; an unreadable file is
    an AnalysisError."""
    try:
        with uproot.open(path) as fin:
            tree = fin[treename]
            return set(tree.keys()), tree.num_entries
    except FileNotFoundError:
        raise AnalysisError(
            f"sample '{sample}': input file {path} not found; fix its path in the samples file"
        ) from None
    except KeyError:
        raise AnalysisError(
            f"sample '{sample}': {path} has no tree '{treename}'; set `treename` in the "
            "samples file"
        ) from None
    except ImportError as err:
        if is_remote(path):  # uproot's reader of the remote protocol is not installed
            raise AnalysisError(
                f"sample '{sample}': cannot read the remote file {path} without the XRootD "
                "client; install it with pip install -e '.[remote]' (fsspec-xrootd and xrootd)"
            ) from None
        reason = " ".join(str(err).split())  # e.g. a compression library to install
        raise AnalysisError(f"sample '{sample}': cannot read {path} ({reason})") from None
    except Exception as err:  # uproot raises several types for corrupt files
        reason = " ".join(str(err).split())  # uproot's messages span several lines
        raise AnalysisError(
            f"sample '{sample}': cannot read {path} ({reason}); replace the file or remove it "
            "from the sample's files"
        ) from None


def generator_sumw(files: Sequence[str], names: Sequence[str]) -> float | None:
    """Sum of generator weights from the ``Runs`` trees, or None if a file lacks them.

    The first of ``names`` present is used (``genEventSumw`` since NanoAOD v7, ``genEventSumw_``
    before).
    """
    total = 0.0
    for path in files:
        with uproot.open(path) as fin:
            if "Runs" not in fin:
                return None
            runs = fin["Runs"]
            name = next((n for n in names if n in runs.keys()), None)
            if name is None:
                return None
            total += float(np.sum(runs[name].array(library="np")))
    return total
