"""The skim layout: the columns the preselection writes and the cutflow steps it records."""

from __future__ import annotations

import numpy as np

from analysis.core.io import EVENT_KEYS

#: Value of a feature that does not exist in an event (e.g. the second jet of a 1-jet event).
MISSING = -10.0

#: Feature columns written to every skim (float32, NanoAOD precision).
FEATURES = (
    "pt_1", "eta_1", "phi_1", "iso_1",
    "pt_2", "eta_2", "phi_2", "m_2",
    "m_vis", "pt_vis", "m_coll", "pt_tt", "dR_ll",
    "met", "met_phi", "mt_1", "mt_2", "mt_tot",
    "njets", "nbtag", "jpt_1", "jeta_1", "jpt_2", "jeta_2", "mjj", "deta_jj",
)  # fmt: skip

#: Event keys with their NanoAOD types.
EVENT_KEY_TYPES = dict(zip(EVENT_KEYS, (np.uint32, np.uint32, np.uint64), strict=True))

#: Integer (int32) columns: tau decay mode, gen match (-1 in data), opposite-sign flag.
INT_COLUMNS = ("dm_2", "gen_match_2", "is_os")

#: Ordered selection steps as they appear in the cutflow.
CUTS = ("all", "trigger", "muon", "extra_muon_veto", "tau_pair", "bjets")
