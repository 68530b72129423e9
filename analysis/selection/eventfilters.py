"""Event filters ahead of the physics selection, each a cutflow step when configured: the
certified-luminosity mask of collision data (``selection.certified_lumi``, coffea's ``LumiMask``
on ``run`` and ``luminosityBlock``) and the MET filters (``selection.met_filters``, ``Flag_*``
branches every event must pass, in data and simulation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from analysis.core.config import is_remote
from analysis.core.errors import AnalysisError
from analysis.selection.nanoaod import column
from analysis.selection.skim import CUTS

if TYPE_CHECKING:
    from coffea.lumi_tools import LumiMask

#: The cutflow step of the certified-luminosity mask (simulation passes it whole).
CERTIFIED_LUMI = "certified_lumi"
#: The cutflow step of the MET filters.
MET_FILTERS = "met_filters"


def cut_steps(cuts: Mapping[str, Any]) -> tuple[str, ...]:
    """The cutflow steps of the config section ``selection``: the filter steps that are
    configured, after ``all`` and before the physics selection of ``CUTS``.

    Every sample gets the same steps, so that the cutflows of data and simulation line up.
    """
    filters = []
    if cuts["certified_lumi"]["file"]:
        filters.append(CERTIFIED_LUMI)
    if cuts["met_filters"]:
        filters.append(MET_FILTERS)
    return (CUTS[0], *filters, *CUTS[1:])


def load_lumi_mask(cuts: Mapping[str, Any], sample: str, simulation: bool) -> LumiMask | None:
    """The certified-luminosity mask of a collision-data sample (None for simulation, or when
    none is configured and none is required)."""
    certified = cuts["certified_lumi"]
    path = certified["file"]
    if simulation or (not path and not certified["required"]):
        return None
    if not path:
        raise AnalysisError(
            f"sample '{sample}' is collision data but selection.certified_lumi.file is null while "
            "selection.certified_lumi.required is true; set it to the era's certified-luminosity "
            "(golden) JSON"
        )
    if not is_remote(path) and not os.path.isfile(path):
        raise AnalysisError(
            f"selection.certified_lumi.file: {path} not found; fix the path of the "
            "certified-luminosity JSON"
        )
    # imported here: coffea.lumi_tools compiles its numba functions on import (about 3 s of CPU
    # in every preselection job), and only collision data with a mask needs them
    from coffea.lumi_tools import LumiMask

    try:
        return LumiMask(path)
    except Exception as err:  # json, fsspec and numpy errors of a malformed file
        raise AnalysisError(
            f"selection.certified_lumi.file: cannot read {path} as a certified-luminosity JSON "
            f"({{run: [[first, last], ...]}}): {err}"
        ) from None


def event_filters(
    events: ak.Array, steps: Sequence[str], lumi_mask: LumiMask | None, met_filters: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per event, whether it passes each configured filter step of ``steps``."""
    flags = {}
    if CERTIFIED_LUMI in steps:
        runs = np.asarray(ak.to_numpy(events.run))
        if lumi_mask is None:  # simulation
            flags[CERTIFIED_LUMI] = np.ones(len(runs), dtype=bool)
        else:
            flags[CERTIFIED_LUMI] = lumi_mask(runs, np.asarray(ak.to_numpy(events.luminosityBlock)))
    if MET_FILTERS in steps:
        passed = np.ones(len(events), dtype=bool)
        for flag in met_filters:
            passed &= np.asarray(ak.to_numpy(column(events, flag)), dtype=bool)
        flags[MET_FILTERS] = passed
    return flags
