"""The coffea processor of the preselection: one read of a chunk, one skim per variation.

For every chunk of events the processor builds the physics objects once
(:mod:`analysis.selection.objects`) and then, for the nominal objects and every object-level
shape variation (:mod:`analysis.selection.shifts`), reruns the selection
(:mod:`analysis.selection.cuts`) and computes the skim rows (:mod:`analysis.selection.rows`).
Each chunk's rows go to a scratch file per variation, named by file index and first entry so that
the driver can merge them in input order; the accumulator carries the cutflows, the
generator-weight sums and the chunk names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

from analysis.core.config import is_simulation
from analysis.selection.cuts import cutflow, event_selection
from analysis.selection.eventfilters import cut_steps, event_filters, load_lumi_mask
from analysis.selection.eventweights import EventCorrections
from analysis.selection.executor import chunk_done
from analysis.selection.jetenergy import JetEnergy, jet_id_correction, with_jet_id
from analysis.selection.objects import WeightInputs, chunk_objects
from analysis.selection.rows import skim_rows
from analysis.selection.shifts import shifted
from analysis.selection.tauenergy import TauEnergy
from analysis.selection.workingpoints import tau_id_cuts

#: Per-event entries of the objects that the skim rows read besides the selected candidates
#: (``pileup``: only when the pileup correction is configured).
ROW_INPUTS = ("keys", "met_x", "met_y", "weight_inputs", "pileup")


class NominalObjects:
    """The nominal objects of a chunk as the selection reads them: the collections, MET and
    trigger (:func:`analysis.selection.objects.chunk_objects`), the jet ID, the smeared jets and
    corrected taus of simulation, and the event filters.

    Args:
        settings: the config sections ``branches``, ``selection``, ``variations``, ``weights``.
        sample_name: the sample's name (for messages).
        simulation: whether the sample is simulated.
    """

    def __init__(self, settings: Mapping[str, Any], sample_name: str, simulation: bool) -> None:
        self.branches = settings["branches"]
        self.cuts = settings["selection"]
        self.uncertainties = settings["variations"]
        self.weights = WeightInputs(settings["weights"], simulation)
        self.jet_energy = JetEnergy(settings["variations"], settings["branches"], simulation)
        self.tau_energy = TauEnergy(settings["variations"], simulation)
        self.jet_id = jet_id_correction(self.cuts["jet"])
        self.steps = cut_steps(self.cuts)
        self.lumi_mask = load_lumi_mask(self.cuts, sample_name, simulation)

    def __call__(self, events: ak.Array) -> dict[str, Any]:
        nominal = chunk_objects(
            events,
            self.branches,
            self.cuts["trigger"]["paths"],
            self.weights,
            met_unclustered=bool(self.uncertainties.get("met_unclustered")),
        )
        if self.jet_id is not None:
            nominal["jets"] = with_jet_id(nominal["jets"], self.jet_id)
        nominal = self.jet_energy.smeared(events, nominal)
        nominal = self.tau_energy.corrected(nominal)
        nominal["filters"] = event_filters(
            events, self.steps, self.lumi_mask, self.cuts["met_filters"]
        )
        return nominal


class SkimProcessor(processor.ProcessorABC):
    """Selects mu+tau_h events, computes features for every shape variation, writes chunk rows.

    Args:
        settings: the config sections ``branches``, ``selection``, ``variations``, ``weights``.
        sample_name: the sample's name (for messages).
        sample: the sample's entry of the samples file.
        variations: the skims to produce (nominal first).
        scratch: directory for per-chunk rows, shared with the dask workers.
        file_index: position of each input file, so rows are ordered by (file, entry).
    """

    def __init__(
        self,
        settings: Mapping[str, Any],
        sample_name: str,
        sample: Mapping[str, Any],
        variations: Sequence[str],
        scratch: str,
        file_index: Mapping[str, int],
    ) -> None:
        self.nominal = NominalObjects(settings, sample_name, is_simulation(sample))
        self.branches = settings["branches"]
        self.cuts = settings["selection"]
        self.uncertainties = settings["variations"]
        self.weights = self.nominal.weights
        self.corrections = EventCorrections(settings["weights"], is_simulation(sample))
        self.jet_energy = self.nominal.jet_energy
        self.tau_energy = self.nominal.tau_energy
        self.steps = self.nominal.steps
        self.tau_ids = tau_id_cuts(self.branches, self.cuts["tau"])
        self.variations = list(variations)
        self.scratch = scratch
        self.file_index = dict(file_index)

    def process(self, events: ak.Array) -> dict[str, Any]:
        """Run all variations on one chunk; return cutflows, weight sums and chunk file names."""
        meta = events.metadata
        chunk = f"{self.file_index[meta['filename']]:05d}_{meta['entrystart']:012d}.npz"
        nominal = self.nominal(events)
        if "pileup" in self.corrections.names:
            nominal["pileup"] = events.Pileup.nTrueInt
        output: dict[str, Any] = {
            "cutflow": {},
            "chunks": [chunk],
            "sumw": self.weights.sums(events),
        }
        for variation in self.variations:
            rows, output["cutflow"][variation] = self._select(
                shifted(nominal, variation, self.uncertainties, self.jet_energy, self.tau_energy)
            )
            np.savez(os.path.join(self.scratch, variation, chunk), **rows)
        chunk_done(len(events))
        return output

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Nothing to merge beyond coffea's accumulation."""
        return accumulator

    def _select(self, objects: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The skim rows of the events passing the selection, and the cutflow."""
        selection, candidates = event_selection(objects, self.cuts, self.branches, self.tau_ids)
        steps = selection.cutflow(*self.steps[1:]).result()
        passed = steps.maskscutflow[-1]
        selected = _take({key: objects[key] for key in ROW_INPUTS if key in objects}, passed)
        for name, values in candidates.items():
            # the candidates of the selected events exist: drop the option type of the others
            selected[name] = None if values is None else ak.drop_none(values[passed], axis=0)
        corrections = self.corrections.columns(selected)
        selected["weight_inputs"] = {**selected["weight_inputs"], **corrections}
        columns = [*self.weights.sources, *corrections]
        rows = skim_rows(selected, self.branches["muon_iso"], columns)
        return rows, cutflow(self.steps, steps, objects["weight"])


def _take(objects: Mapping[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Keep the events passing ``mask`` in every per-event entry (nested dicts included)."""
    return {
        key: _take(value, mask) if isinstance(value, dict) else value[mask]
        for key, value in objects.items()
    }
