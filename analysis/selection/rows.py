"""Skim rows: event keys, features, integer columns and weight inputs of the selected events, as
flat numpy arrays in the types of :mod:`analysis.selection.skim`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from analysis.selection.kinematics import ditau_features, jet_features
from analysis.selection.nanoaod import field
from analysis.selection.skim import EVENT_KEY_TYPES, FEATURES, INT_COLUMNS


def skim_rows(
    selected: Mapping[str, Any], muon_iso: str, weight_columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """The skim columns of the selected events.

    Args:
        selected: per-event entries of the selected events: ``keys``, ``met_x``, ``met_y``,
            ``weight_inputs`` and the candidates ``muon``, ``tau``, ``tau_genmatch`` (None for
            data), ``jets`` and ``bjets``.
        muon_iso: the muon isolation branch (``branches.muon_iso``).
        weight_columns: the weight-input columns (``w_*``) to write.
    """
    muon, tau = selected["muon"], selected["tau"]
    met_x, met_y = _np(selected["met_x"]), _np(selected["met_y"])
    leptons = {
        "pt_1": _np(muon.pt), "eta_1": _np(muon.eta), "phi_1": _np(muon.phi),
        "iso_1": _np(muon[field(muon_iso)]),
        "pt_2": _np(tau.pt), "eta_2": _np(tau.eta), "phi_2": _np(tau.phi), "m_2": _np(tau.mass),
    }  # fmt: skip
    features = ditau_features(leptons, _np(muon.mass), met_x, met_y)
    features.update(leptons)
    features.update(jet_features(selected["jets"], selected["bjets"]))
    columns = {key: _np(selected["keys"][key]).astype(t) for key, t in EVENT_KEY_TYPES.items()}
    columns.update({name: features[name].astype(np.float32) for name in FEATURES})
    genmatch = selected["tau_genmatch"]
    integers = {
        "dm_2": _np(tau.decayMode),
        "gen_match_2": np.full(len(met_x), -1) if genmatch is None else _np(genmatch),
        "is_os": _np(muon.charge) * _np(tau.charge) < 0,
    }
    columns.update({name: integers[name].astype(np.int32) for name in INT_COLUMNS})
    for name in weight_columns:
        columns[name] = _np(selected["weight_inputs"][name]).astype(np.float32)
    return columns


def _np(values: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(values))
