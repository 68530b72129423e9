"""Working-point cuts on tau_h identification branches.

NanoAOD stores a working point in two ways: as a cumulative bitmask (DeepTau 2017v2p1 in NanoAOD
v9: bit ``i`` set when the ``i``-th working point, loosest first, is passed) or as a working-point
index (DeepTau 2018v2p5 in NanoAOD v12+: 1 = the loosest point, 8 = VVTight). The config names
the encoding of each branch (``branches.working_points``) and gives thresholds as working-point
names (``selection.tau.id_min: Medium``); a name is translated once into a cut. An integer
threshold is a raw minimum value (``branch >= value``), for discriminants without named points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak

from analysis.core.errors import AnalysisError
from analysis.selection.nanoaod import field

#: The selection.tau key of each working-point threshold, by branches key.
THRESHOLD_KEYS = {"tau_id": "id_min", "tau_antimu": "antimu_min"}


@dataclass(frozen=True)
class WorkingPointCut:
    """A cut on one ID branch: a bit test (``bitmask``) or a minimum value (``minimum``)."""

    branch: str
    kind: str
    value: int

    def passes(self, objects: ak.Array) -> ak.Array:
        """Per object, whether it passes the working point."""
        values = objects[field(self.branch)]
        if self.kind == "bitmask":
            return (values & self.value) != 0
        return values >= self.value


def working_point_cut(
    branch: str, spec: Mapping[str, Any], threshold: int | str, key: str
) -> WorkingPointCut:
    """The cut of ``threshold`` (a name of ``spec["names"]`` or a raw minimum) on ``branch``.

    ``key`` names the config key of the threshold, for the error message.
    """
    if isinstance(threshold, int):
        return WorkingPointCut(branch, "minimum", threshold)
    names = list(spec["names"])
    if threshold not in names:
        raise AnalysisError(
            f"config key {key}: '{threshold}' is not a working point of {branch} "
            f"({', '.join(names)}); use one of these names or an integer minimum value"
        )
    index = names.index(threshold)
    if spec["encoding"] == "bitmask":
        return WorkingPointCut(branch, "bitmask", 1 << index)
    return WorkingPointCut(branch, "minimum", index + 1)


def tau_id_cuts(
    branches: Mapping[str, Any], tau_cuts: Mapping[str, Any]
) -> dict[str, WorkingPointCut]:
    """The tau_h ID cuts (``tau_id``, ``tau_antimu``) of the config, translated once."""
    return {
        name: working_point_cut(
            branches[name],
            branches["working_points"][name],
            tau_cuts[threshold],
            f"selection.tau.{threshold}",
        )
        for name, threshold in THRESHOLD_KEYS.items()
    }
