"""Branch layouts of the toy NanoAOD files (``toydata.nanoaod``).

The toy is generated in the NanoAOD v9 layout (Run-2 UL: ``MET_*`` with
``MET_MetUnclustEnUpDelta{X,Y}``, DeepTau 2017v2p1 IDs as cumulative bitmasks, ``Jet_jetId``).
``v15`` rewrites the same events in the layout of NanoAOD v15 (2024 data): ``PuppiMET_*`` with
the varied MET in ``PuppiMET_{pt,phi}Unclustered{Up,Down}``, DeepTau 2018v2p5 IDs as
working-point indices (1 = loosest point passed, 0 = none), no ``Jet_jetId``, the b-tagging
score as UParT's (``Jet_btagUParTAK4B``, the 2024 tagger) instead of DeepJet's. Only the form
changes: the same events pass the same selection through the matching preset
(``config/nanoaod/v9.yaml`` or ``v15.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import awkward as ak
import numpy as np

#: DeepTau IDs of the toy: v9 (bitmask) field -> v15 (working-point index) field.
TAU_IDS = {
    "idDeepTau2017v2p1VSjet": "idDeepTau2018v2p5VSjet",
    "idDeepTau2017v2p1VSmu": "idDeepTau2018v2p5VSmu",
}


def in_layout(columns: dict[str, Any], layout: str) -> dict[str, Any]:
    """The columns of one chunk (v9 layout) in ``layout`` (``v9`` or ``v15``)."""
    return LAYOUTS[layout](columns)


def _v15(columns: dict[str, Any]) -> dict[str, Any]:
    """NanoAOD v15: PuppiMET with shifted unclustered MET, WP-index tau IDs, no Jet_jetId, the
    UParT b-tagging score."""
    out = {key: value for key, value in columns.items() if not key.startswith("MET_")}
    taus = columns["Tau"]
    for old, new in TAU_IDS.items():
        taus = ak.with_field(taus, _wp_index(taus[old]), new)
        taus = ak.without_field(taus, old)
    out["Tau"] = taus
    jets = ak.with_field(columns["Jet"], columns["Jet"]["btagDeepFlavB"], "btagUParTAK4B")
    out["Jet"] = ak.without_field(ak.without_field(jets, "jetId"), "btagDeepFlavB")
    pt = columns["MET_pt"].astype(np.float64)
    phi = columns["MET_phi"].astype(np.float64)
    dx = columns["MET_MetUnclustEnUpDeltaX"].astype(np.float64)
    dy = columns["MET_MetUnclustEnUpDeltaY"].astype(np.float64)
    out["PuppiMET_pt"], out["PuppiMET_phi"] = columns["MET_pt"], columns["MET_phi"]
    for direction, sign in (("Up", 1.0), ("Down", -1.0)):
        met_x = pt * np.cos(phi) + sign * dx
        met_y = pt * np.sin(phi) + sign * dy
        out[f"PuppiMET_ptUnclustered{direction}"] = np.hypot(met_x, met_y).astype(np.float32)
        out[f"PuppiMET_phiUnclustered{direction}"] = np.arctan2(met_y, met_x).astype(np.float32)
    return out


def _wp_index(bitmask: ak.Array) -> ak.Array:
    """Working-point index of a cumulative bitmask: the number of points passed."""
    flat = np.asarray(ak.to_numpy(ak.flatten(bitmask)), dtype=np.uint8)
    index = np.unpackbits(flat[:, None], axis=1).sum(axis=1).astype(np.uint8)
    return ak.unflatten(index, ak.num(bitmask))


#: How each layout is written from the generated (v9) columns.
LAYOUTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "v9": dict,
    "v15": _v15,
}
