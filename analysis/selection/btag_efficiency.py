"""The b-tagging efficiency map of this analysis's simulation, measured by the workflow.

The fixed working-point b-tagging event weight (:mod:`analysis.selection.eventweights`) needs the
probability that a jet of each flavour passes the working point in the analysis's own
simulation; no POG publishes it. With ``weights.corrections.btag.efficiency.file: measured`` the
workflow measures it (rule ``btag_efficiency``, one map per era) before the preselection, as the
BTV POG's recipe asks: in the analysis's phase space without its b-tagging requirement. Over the
nominal simulated samples, the events passing the preselection's event filters and selection
except the b-jet cut (``selection.max_bjets``) are kept, and their b-tagging candidates, the very
jets the event weight multiplies over (jet ID, cleaned against the selected muon and tau_h, in
the ``selection.bjet`` pT and |eta| acceptance, JER-smeared when configured), are counted by
flavour (``Jet_hadronFlavour``: 5, 4, 0) in bins of |eta| and pT, weighted by the generator
weight. The tagged fraction (score above ``selection.bjet.wp``) is written as a correctionlib
file in the layout the weight reads: ``btag_efficiency`` with inputs ``working_point``,
``flavor``, ``abseta``, ``pt``. All samples are counted together (enough jets per bin); a bin
without jets of a flavour gets that flavour's efficiency over all bins.

    python -m analysis.selection.btag_efficiency --files A.root B.root --settings JSON --output F \
        [--chunksize N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import correctionlib.schemav2 as cs
import numpy as np
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path
from analysis.selection.cuts import event_selection
from analysis.selection.eventfilters import cut_steps
from analysis.selection.nanoaod import check_inputs, required_branches
from analysis.selection.processor import NominalObjects
from analysis.selection.skim import CUTS
from analysis.selection.workingpoints import tau_id_cuts

log = logging.getLogger(__name__)

#: The map's bins (jet pT in GeV, |eta|) and the flavours it holds (hadron flavour).
PT_EDGES = (20.0, 30.0, 50.0, 70.0, 100.0, 140.0, 200.0, 300.0, 1000.0)
ABSETA_EDGES = (0.0, 0.8, 1.6, 2.5)
FLAVOURS = (0, 4, 5)
#: The branch of the jets' flavour, and the selection step the measurement leaves out.
FLAVOUR_BRANCH, BJET_STEP = "Jet_hadronFlavour", CUTS[-1]
#: Events read at a time unless the caller says (the workflow passes ``preselect.chunksize``).
CHUNKSIZE = 100_000


def count_jets(path: str, settings: Mapping[str, Any], chunksize: int = CHUNKSIZE) -> np.ndarray:
    """The b-tagging candidates of the selected events of one NanoAOD file (the selection
    without its b-jet requirement), by flavour, |eta| and pT bin: summed generator weights
    ``(2: all, tagged; flavours; |eta| bins; pT bins)``, read ``chunksize`` events at a time.

    Args:
        path: the file.
        settings: the config sections ``branches``, ``selection``, ``variations``, ``weights``.
        chunksize: events per read (bounds the memory, as ``preselect.chunksize`` does).
    """
    needed = {**required_branches(settings, simulation=True), FLAVOUR_BRANCH: "the b-tagging "
              "efficiency (the jets' flavour)"}  # fmt: skip
    entries = check_inputs([path], "Events", needed, "b-tagging efficiency")
    nominal = NominalObjects(settings, path, simulation=True)
    tau_ids = tau_id_cuts(settings["branches"], settings["selection"]["tau"])
    counts = np.zeros((2, len(FLAVOURS), len(ABSETA_EDGES) - 1, len(PT_EDGES) - 1))
    for start in range(0, entries, chunksize):
        events = NanoEventsFactory.from_root(
            {path: "Events"}, schemaclass=NanoAODSchema, mode="eager",
            entry_start=start, entry_stop=min(start + chunksize, entries),
        ).events()  # fmt: skip
        counts += _count_chunk(nominal(events), settings["selection"], settings["branches"],
                               tau_ids)  # fmt: skip
    return counts


def _count_chunk(
    objects: Mapping[str, Any],
    cuts: Mapping[str, Any],
    branches: Mapping[str, Any],
    tau_ids: Mapping[str, Any],
) -> np.ndarray:
    """:func:`count_jets` of one chunk's nominal objects."""
    selection, candidates = event_selection(objects, cuts, branches, tau_ids)
    steps = [step for step in cut_steps(cuts)[1:] if step != BJET_STEP]
    passed = np.asarray(selection.all(*steps))
    jets = ak.drop_none(candidates["btag_jets"][passed], axis=0)
    weight = ak.broadcast_arrays(objects["weight"][passed], jets.pt)[0]
    columns = {
        "pt": jets.pt, "abseta": abs(jets.eta), "flavour": jets.hadronFlavour,
        "tagged": jets.btagged,
    }  # fmt: skip
    flat = {name: np.asarray(ak.to_numpy(ak.flatten(values))) for name, values in columns.items()}
    return _histogram(flat, np.asarray(ak.to_numpy(ak.flatten(weight)), dtype=float))


def _histogram(jets: Mapping[str, np.ndarray], weight: np.ndarray) -> np.ndarray:
    """Summed weights of all and of tagged jets per flavour, |eta| and pT bin (clamped)."""
    counts = np.zeros((2, len(FLAVOURS), len(ABSETA_EDGES) - 1, len(PT_EDGES) - 1))
    eta_bin = np.clip(np.searchsorted(ABSETA_EDGES, jets["abseta"], side="right") - 1, 0,
                      len(ABSETA_EDGES) - 2)  # fmt: skip
    pt_bin = np.clip(np.searchsorted(PT_EDGES, jets["pt"], side="right") - 1, 0, len(PT_EDGES) - 2)
    for index, flavour in enumerate(FLAVOURS):
        of_flavour = jets["flavour"] == flavour
        for row, selected in enumerate((of_flavour, of_flavour & jets["tagged"].astype(bool))):
            np.add.at(counts[row, index], (eta_bin[selected], pt_bin[selected]), weight[selected])
    return counts


def efficiencies(counts: np.ndarray) -> np.ndarray:
    """Tagged over all jets per flavour and bin, in [0, 1]; a bin without jets (or with a
    non-positive sum of weights) takes its flavour's overall efficiency (0 without any jet)."""
    total, tagged = counts
    overall = np.divide(
        tagged.sum(axis=(1, 2)), total.sum(axis=(1, 2)),
        out=np.zeros(len(FLAVOURS)), where=total.sum(axis=(1, 2)) > 0,
    )  # fmt: skip
    fallback = np.broadcast_to(overall[:, None, None], total.shape)
    ratio = np.divide(tagged, total, out=fallback.copy(), where=total > 0)
    return np.clip(ratio, 0.0, 1.0)


def efficiency_correction(
    values: np.ndarray, working_point: str, name: str = "btag_efficiency"
) -> cs.Correction:
    """The map as the correction the b-tagging weight reads: working_point -> flavor ->
    (abseta, pt), clamped at the edges."""
    by_flavour = [
        cs.CategoryItem(key=flavour, value=cs.MultiBinning(
            nodetype="multibinning", inputs=["abseta", "pt"],
            edges=[list(ABSETA_EDGES), list(PT_EDGES)],
            content=[float(v) for v in values[index].ravel()], flow="clamp",
        ))
        for index, flavour in enumerate(FLAVOURS)
    ]  # fmt: skip
    flavours = cs.Category(nodetype="category", input="flavor", content=by_flavour)
    return cs.Correction(
        name=name,
        description="b-tagging efficiency in this analysis's simulation (measured)",
        version=1,
        inputs=[cs.Variable(name="working_point", type="string"),
                cs.Variable(name="flavor", type="int"),
                cs.Variable(name="abseta", type="real"),
                cs.Variable(name="pt", type="real")],
        output=cs.Variable(name="efficiency", type="real"),
        data=cs.Category(nodetype="category", input="working_point",
                         content=[cs.CategoryItem(key=working_point, value=flavours)]),
    )  # fmt: skip


def measure(
    files: Sequence[str], settings: Mapping[str, Any], output: str, chunksize: int = CHUNKSIZE
) -> np.ndarray:
    """Count the jets of ``files`` (``chunksize`` events at a time), write the map to ``output``
    and return the efficiencies ``(flavours, |eta| bins, pT bins)``."""
    if not files:
        raise AnalysisError("no simulated sample to measure the b-tagging efficiency in")
    counts = sum(count_jets(path, settings, chunksize) for path in files)
    for index, flavour in enumerate(FLAVOURS):
        if counts[0, index].sum() <= 0:
            log.warning(
                "flavour %d: no jets in the selected events of %d files, efficiency 0 in every "
                "bin (the weight is then the scale factor of tagged jets alone)", flavour,
                len(files),
            )  # fmt: skip
    values = efficiencies(counts)
    btag = settings["weights"]["corrections"]["btag"]
    name = btag["efficiency"]["correction"]
    correction = efficiency_correction(values, btag["working_point"], name)
    cset = cs.CorrectionSet(schema_version=2, corrections=[correction])
    with atomic_path(output) as tmp:
        tmp.write_text(cset.model_dump_json(exclude_unset=True, indent=1) + "\n")
    return values


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the b-tagging efficiency map.")
    parser.add_argument("--files", nargs="+", required=True, help="simulated NanoAOD files")
    parser.add_argument(
        "--settings", required=True, help="branches, selection, variations, weights (JSON)"
    )
    parser.add_argument("--output", required=True, help="the correctionlib file to write")
    parser.add_argument("--chunksize", type=int, default=CHUNKSIZE, help="events per read")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    values = measure(args.files, settings, os.fspath(args.output), args.chunksize)
    for index, flavour in enumerate(FLAVOURS):
        log.info("flavour %d: efficiency %.3f to %.3f over the bins", flavour,
                 values[index].min(), values[index].max())  # fmt: skip


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
