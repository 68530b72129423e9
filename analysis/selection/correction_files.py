"""Small correction files in the layouts of the official CMS correctionlib (schema v2) files.

The official files (LUM POG pileup, MUO POG muon, TAU POG tau, BTV POG b-tagging, JME POG jet
energy resolution, energy-scale uncertainties and jet ID) are large and are not shipped with the
repository. The files written here have the same correction names, input names, input types and
systematic keys, so that the analysis code cannot tell them from the official ones, and few bins,
so that tests can compute every value by hand:

- pileup: ``<name>`` with inputs ``NumTrueInteractions`` (real), ``weights`` (``nominal``, ``up``,
  ``down``), the data over simulation ratio of the true-interaction profiles;
- muon: ``NUM_..._DEN_...`` with inputs ``abseta``, ``pt`` (real), ``scale_factors``
  (``nominal``, ``systup``, ``systdown``, ``stat``, ``syst``), or the older UL layout with inputs
  ``year``, ``abseta``, ``pt``, ``ValType`` (``sf``, ``systup``, ``systdown``);
- tau: ``DeepTau2018v2p5VSjet`` with inputs ``pt`` (real), ``dm``, ``genmatch`` (int), ``wp``,
  ``wp_VSe``, ``syst`` (``nom``, ``up``, ``down``), ``flag`` (``dm`` or ``pt``); 1 for tau_h that
  are not genuine (``genmatch`` != 5); and ``tau_energy_scale`` with inputs ``pt``, ``eta``
  (real), ``dm``, ``genmatch`` (int), ``id``, ``syst`` (``nom``, ``up``, ``down``), the Run-2 UL
  layout;
- b tagging: ``deepJet_mujets`` / ``deepJet_incl`` with inputs ``systematic`` (``central``,
  ``up``, ``down``), ``working_point`` (``L``, ``M``, ``T``), ``flavor`` (int: 0, 4, 5),
  ``abseta``, ``pt``; the b-jet-only Run-3 layout of 2024 (``UParTAK4_kinfit``, flavour 5,
  systematics ``central`` and ``up_<source>``/``down_<source>`` of split uncertainty sources,
  beside the light jets' ``UParTAK4_negtagDY``); and this analysis's own b-tagging efficiency
  map in simulation (``btag_efficiency``: ``working_point``, ``flavor``, ``abseta``, ``pt``),
  which the fixed working-point event weight needs and which no POG publishes;
- JME: ``<tag>_ScaleFactor_AK4PFchs`` (``JetEta``, ``systematic``: ``nom``, ``up``, ``down``),
  ``<tag>_PtResolution_AK4PFchs`` (``JetEta``, ``JetPt``, ``Rho``), ``<tag>_<source>_AK4PFchs``
  (``JetEta``, ``JetPt``: the relative uncertainty of one energy-scale source);
- jet ID: ``AK4PUPPI_Tight`` with inputs ``eta``, ``chHEF``, ``neHEF``, ``chEmEF``, ``neEmEF``,
  ``muEF``, ``chMultiplicity``, ``neMultiplicity``, ``multiplicity``; 1 passes, 0 fails.

``python -m analysis.selection.correction_files DIR`` writes one file per kind into ``DIR``
(``puWeights.json``, ``muon_Z.json``, ``tau.json``, ``btagging.json``, ``btag_efficiency.json``,
``jet_jerc.json``, ``jetid.json``), named by the correction names of ``config/eras/2018UL.yaml``
(``--era 2024``: of ``config/eras/2024.yaml``, in the Run-3 layouts).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import correctionlib.schemav2 as cs
import numpy as np

from analysis.core.errors import cli_main
from analysis.core.io import atomic_path

#: Edges of the pileup profile (true interactions), as in the LUM POG files.
PILEUP_EDGES = [float(edge) for edge in range(0, 101)]
#: The toy "data" profile is the simulated one scaled by this (more pileup in data), and by
#: 1 +- the relative minimum-bias cross-section uncertainty for the up/down profiles.
PILEUP_DATA_SCALE = 1.03
PILEUP_XSEC_VARIATION = 0.046

#: Muon scale-factor binning and values (|eta| rows, pT columns), and their uncertainty.
MUON_ABSETA_EDGES = [0.0, 0.9, 1.2, 2.1, 2.4]
MUON_PT_EDGES = [15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 120.0]
MUON_SYST = 0.005

#: Tau ID scale factors per decay mode (flag ``dm``) and per pT bin (flag ``pt``).
TAU_DM_SF = {0: 0.95, 1: 0.92, 10: 0.90, 11: 0.87}
TAU_PT_EDGES = [20.0, 25.0, 30.0, 35.0, 40.0, 1000.0]
TAU_PT_SF = [0.91, 0.92, 0.93, 0.94, 0.95]
TAU_SYST = 0.03
TAU_WORKING_POINTS = ["Loose", "Medium", "Tight", "VTight"]
TAU_WORKING_POINTS_VSE = ["VVLoose", "Tight"]
#: Tau energy scale: per decay mode for genuine tau_h (nominal, uncertainty), and for electrons
#: faking a tau_h per decay mode in the barrel (|eta| < 1.5) and the endcaps.
TAU_ES = {0: (0.987, 0.008), 1: (0.995, 0.007), 10: (0.988, 0.009), 11: (0.997, 0.010)}
TAU_ES_EFAKE = {0: ((1.007, 0.008), (0.969, 0.020)), 1: ((1.029, 0.010), (1.015, 0.030))}
TAU_ES_EFAKE_ETA_EDGES = [-2.5, -1.5, 1.5, 2.5]
TAU_ES_ID = "DeepTau2017v2p1"

#: b-tagging scale factors per flavour (|eta| < 2.5, in pT bins) and their uncertainty.
BTAG_PT_EDGES = [20.0, 50.0, 100.0, 1000.0]
BTAG_SF = {5: [0.95, 0.97, 0.98], 4: [0.95, 0.97, 0.98], 0: [1.10, 1.15, 1.20]}
BTAG_EFFICIENCY = {5: [0.65, 0.72, 0.70], 4: [0.15, 0.17, 0.18], 0: [0.010, 0.012, 0.015]}
BTAG_SYST = {5: 0.02, 4: 0.04, 0: 0.10}
BTAG_WORKING_POINTS = ["L", "M", "T"]
#: The b-jet-only Run-3 layout (2024's ``UParTAK4_kinfit``): its uncertainty sources and their
#: shifts in units of BTAG_SYST, and the correction names of the b and light jets' scale factors.
BTAG_SOURCES = {"fsrdef": 0.3, "hdamp": 0.2, "isrdef": -0.2, "jer": 0.1, "jes": -0.8,
                "mass": 0.1, "statistic": 0.6, "tune": 0.2}  # fmt: skip
RUN3_BTAG = {"correction": "UParTAK4_kinfit", "light_correction": "UParTAK4_negtagDY"}

#: JER: scale factor per |eta| bin with uncertainty, and the resolution's N, S, C terms.
JER_ETA_EDGES = [-5.0, -2.5, -1.3, 0.0, 1.3, 2.5, 5.0]
JER_SF = [1.20, 1.15, 1.10, 1.10, 1.15, 1.20]
JER_SF_UNC = 0.05
JER_RHO_EDGES = [0.0, 20.0, 100.0]
JER_NSC = {"low": (3.0, 0.9, 0.04), "high": (4.0, 1.0, 0.05)}
#: JES: relative uncertainty of each source, in |eta| and pT bins.
JES_ETA_EDGES = [-5.0, -2.5, 0.0, 2.5, 5.0]
JES_PT_EDGES = [10.0, 50.0, 7000.0]
JES_SOURCES = {"Absolute": [0.015, 0.010], "FlavorQCD": [0.020, 0.008]}


def _binning(variable: str, edges: Sequence[float], content: Sequence, flow: str = "clamp"):
    return cs.Binning(
        nodetype="binning", input=variable, edges=list(edges), content=list(content), flow=flow
    )


def _category(variable: str, items: Mapping, default: float | None = None) -> cs.Category:
    content = [cs.CategoryItem(key=key, value=value) for key, value in items.items()]
    return cs.Category(nodetype="category", input=variable, content=content, default=default)


def _correction(
    name: str, description: str, inputs: Sequence[tuple[str, str]], output: str, data
) -> cs.Correction:
    return cs.Correction(
        name=name,
        description=description,
        version=1,
        inputs=[cs.Variable(name=n, type=t) for n, t in inputs],
        output=cs.Variable(name=output, type="real"),
        data=data,
    )


def pileup_weights(true_interactions: np.ndarray) -> dict[str, list[float]]:
    """Pileup weights (nominal, up, down) per bin of :data:`PILEUP_EDGES` for a simulation whose
    true-interaction values are ``true_interactions``.

    The toy "data" profile is the simulated profile stretched by :data:`PILEUP_DATA_SCALE` times
    1 and 1 +- :data:`PILEUP_XSEC_VARIATION` (interpolated, so integer-valued simulation leaves no
    empty bins), normalised to 1 over the bins the simulation fills; the weight is its ratio to
    the simulated profile, so the simulation it was derived for averages to 1.
    """
    values = np.asarray(true_interactions, dtype=np.float64)
    simulated, _ = np.histogram(values, bins=PILEUP_EDGES)
    simulated = simulated / max(simulated.sum(), 1)
    centres = 0.5 * (np.asarray(PILEUP_EDGES[1:]) + np.asarray(PILEUP_EDGES[:-1]))
    filled = simulated > 0
    weights = {}
    for name, scale in (("nominal", 1.0), ("up", 1 + PILEUP_XSEC_VARIATION),
                        ("down", 1 - PILEUP_XSEC_VARIATION)):  # fmt: skip
        stretch = scale * PILEUP_DATA_SCALE
        data = np.interp(centres / stretch, centres, simulated, left=0.0, right=0.0) / stretch
        data = np.where(filled, data, 0.0)
        data = data / max(data.sum(), 1e-300)
        ratio = np.divide(data, simulated, out=np.zeros_like(data), where=filled)
        weights[name] = [float(v) for v in ratio]
    return weights


def pileup_correction(name: str, weights: Mapping[str, Sequence[float]]) -> cs.Correction:
    """The LUM POG layout: ``weights`` category, then the true interactions."""
    return _correction(
        name,
        "Event weight for pileup (toy profile)",
        [("NumTrueInteractions", "real"), ("weights", "string")],
        "weight",
        _category(
            "weights",
            {key: _binning("NumTrueInteractions", PILEUP_EDGES, weights[key])
             for key in ("nominal", "up", "down")},
        ),
    )  # fmt: skip


def muon_values(scale: float) -> list[float]:
    """Muon scale factors by (|eta| bin, pT bin), row-major as in a MultiBinning."""
    n_eta, n_pt = len(MUON_ABSETA_EDGES) - 1, len(MUON_PT_EDGES) - 1
    return [scale - 0.01 * i - 0.002 * j for i in range(n_eta) for j in range(n_pt)]


def muon_correction(name: str, scale: float, layout: str = "current") -> cs.Correction:
    """A MUO POG scale factor. ``layout``: ``current`` (inputs abseta, pt, scale_factors) or
    ``legacy`` (the first UL files: year, abseta, pt, ValType with sf/systup/systdown)."""
    central = muon_values(scale)
    systematics = {"nominal": central,
                   "systup": [v + MUON_SYST for v in central],
                   "systdown": [v - MUON_SYST for v in central],
                   "stat": [MUON_SYST / 2] * len(central),
                   "syst": [MUON_SYST / 2] * len(central)}  # fmt: skip
    syst_input = "scale_factors"
    if layout == "legacy":
        systematics = {"sf": central, "systup": systematics["systup"],
                       "systdown": systematics["systdown"]}  # fmt: skip
        syst_input = "ValType"

    def table(values: list[float]) -> cs.MultiBinning:
        return cs.MultiBinning(
            nodetype="multibinning",
            inputs=["abseta", "pt"],
            edges=[MUON_ABSETA_EDGES, MUON_PT_EDGES],
            content=values,
            flow="clamp",
        )

    data = _category(syst_input, {key: table(values) for key, values in systematics.items()})
    inputs = [("abseta", "real"), ("pt", "real"), (syst_input, "string")]
    if layout == "legacy":
        inputs.insert(0, ("year", "string"))
        data = _category("year", {"2018_UL": data})
    return _correction(name, "Muon scale factor (toy values)", inputs, "value", data)


def tau_correction(name: str = "DeepTau2018v2p5VSjet") -> cs.Correction:
    """The TAU POG DeepTau VSjet layout: genmatch 5 -> wp -> wp_VSe -> flag (dm | pt) -> syst."""

    def by_syst(value: float) -> cs.Category:
        return _category("syst", {"nom": value, "up": value + TAU_SYST, "down": value - TAU_SYST})

    def by_flag(offset: float) -> cs.Category:
        by_dm = _category("dm", {dm: by_syst(sf + offset) for dm, sf in TAU_DM_SF.items()})
        by_pt = _binning(
            "pt", TAU_PT_EDGES, [by_syst(sf + offset) for sf in TAU_PT_SF], flow="clamp"
        )
        return _category("flag", {"dm": by_dm, "pt": by_pt})

    genuine = _category(
        "wp",
        {wp: _category("wp_VSe", {vse: by_flag(0.01 * i - 0.005 * j)
                                  for j, vse in enumerate(TAU_WORKING_POINTS_VSE)})
         for i, wp in enumerate(TAU_WORKING_POINTS)},
    )  # fmt: skip
    return _correction(
        name,
        "DeepTau VSjet scale factor for genuine tau_h (toy values)",
        [("pt", "real"), ("dm", "int"), ("genmatch", "int"), ("wp", "string"),
         ("wp_VSe", "string"), ("syst", "string"), ("flag", "string")],
        "sf",
        _category("genmatch", {5: genuine}, default=1.0),
    )  # fmt: skip


def tau_energy_scale_correction(
    name: str = "tau_energy_scale",
    tau_id: str = TAU_ES_ID,
    working_points: tuple[str, str] | None = None,
) -> cs.Correction:
    """The TAU POG energy-scale layout: genmatch (5: genuine tau_h; 1, 3: electrons, barrel and
    endcaps in eta) -> id -> dm -> syst; 1 for tau_h from jets and muons (here) and for decay
    modes without a measurement. Run-2 UL has these inputs; the Run-3 layout adds the VSjet and
    VSe working points, ``wp`` and ``wp_VSe`` (``working_points``: the one pair written)."""

    def by_syst(value: float, uncertainty: float) -> cs.Category:
        return _category(
            "syst", {"nom": value, "up": value + uncertainty, "down": value - uncertainty}
        )

    genuine = _category("dm", {dm: by_syst(*es) for dm, es in TAU_ES.items()}, default=1.0)
    electrons = _category(
        "dm",
        {dm: _binning("eta", TAU_ES_EFAKE_ETA_EDGES,
                      [by_syst(*endcap), by_syst(*barrel), by_syst(*endcap)])
         for dm, (barrel, endcap) in TAU_ES_EFAKE.items()},
        default=1.0,
    )  # fmt: skip
    inputs = [("pt", "real"), ("eta", "real"), ("dm", "int"), ("genmatch", "int"),
              ("id", "string")]  # fmt: skip

    def by_id(node: Any) -> cs.Category:
        if working_points is not None:
            vs_jet, vs_e = working_points
            node = _category("wp", {vs_jet: _category("wp_VSe", {vs_e: node})})
        return _category("id", {tau_id: node})

    if working_points is not None:
        inputs += [("wp", "string"), ("wp_VSe", "string")]
    return _correction(
        name,
        "Tau energy scale by generator match (toy values)",
        [*inputs, ("syst", "string")],
        "tes",
        _category("genmatch", {5: by_id(genuine), 1: by_id(electrons), 3: by_id(electrons)},
                  default=1.0),
    )  # fmt: skip


def btag_correction(
    name: str, flavours: Sequence[int], sources: Mapping[str, float] | None = None
) -> cs.Correction:
    """A BTV POG fixed working-point layout: systematic -> working_point -> flavor -> abseta, pt.

    The systematics are ``central``, ``up``, ``down``; with ``sources`` (name -> shift in units of
    the flavour's uncertainty), as the Run-3 payloads split theirs, ``central`` and
    ``up_<source>``, ``down_<source>`` instead.
    """
    shifts = {"central": 0.0}
    if sources:
        for source, shift in sources.items():
            shifts.update({f"up_{source}": shift, f"down_{source}": -shift})
    else:
        shifts.update(up=1.0, down=-1.0)

    def table(flavour: int, shift: float, wp_index: int) -> cs.MultiBinning:
        values = [sf + shift * BTAG_SYST[flavour] - 0.01 * wp_index for sf in BTAG_SF[flavour]]
        return cs.MultiBinning(
            nodetype="multibinning",
            inputs=["abseta", "pt"],
            edges=[[0.0, 2.5], BTAG_PT_EDGES],
            content=values,
            flow="clamp",
        )

    data = _category(
        "systematic",
        {syst: _category("working_point",
                         {wp: _category("flavor", {f: table(f, shift, i) for f in flavours})
                          for i, wp in enumerate(BTAG_WORKING_POINTS)})
         for syst, shift in shifts.items()},
    )  # fmt: skip
    return _correction(
        name,
        "b-tagging fixed working-point scale factor (toy values)",
        [("systematic", "string"), ("working_point", "string"), ("flavor", "int"),
         ("abseta", "real"), ("pt", "real")],
        "weight",
        data,
    )  # fmt: skip


def btag_efficiency_correction(name: str = "btag_efficiency") -> cs.Correction:
    """The b-tagging efficiency in simulation per flavour (this analysis's own map)."""
    data = _category(
        "working_point",
        {wp: _category("flavor", {f: cs.MultiBinning(nodetype="multibinning",
                                                     inputs=["abseta", "pt"],
                                                     edges=[[0.0, 2.5], BTAG_PT_EDGES],
                                                     content=values, flow="clamp")
                                  for f, values in BTAG_EFFICIENCY.items()})
         for wp in BTAG_WORKING_POINTS},
    )  # fmt: skip
    return _correction(
        name,
        "b-tagging efficiency in simulation (toy values)",
        [("working_point", "string"), ("flavor", "int"), ("abseta", "real"), ("pt", "real")],
        "efficiency",
        data,
    )


def jer_scale_factor_correction(name: str) -> cs.Correction:
    """JME layout of the resolution scale factor: JetEta bins, then systematic nom/up/down."""
    content = [
        _category("systematic", {"nom": sf, "up": sf + JER_SF_UNC, "down": sf - JER_SF_UNC})
        for sf in JER_SF
    ]
    return _correction(
        name,
        "Jet energy resolution scale factor (toy values)",
        [("JetEta", "real"), ("systematic", "string")],
        "ScaleFactor",
        _binning("JetEta", JER_ETA_EDGES, content),
    )


def jer_resolution(pt: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """The relative pT resolution of :func:`jer_resolution_correction` (for tests)."""
    low = np.asarray(rho) < JER_RHO_EDGES[1]
    result = np.empty(np.shape(pt))
    for mask, key in ((low, "low"), (~low, "high")):
        n, s, c = JER_NSC[key]
        x = np.asarray(pt, dtype=np.float64)[mask]
        result[mask] = np.sqrt(n * n / (x * x) + s * s / x + c * c)
    return result


def jer_resolution_correction(name: str) -> cs.Correction:
    """JME layout of the pT resolution: JetEta and Rho bins, then a formula in JetPt."""

    def formula(key: str) -> cs.Formula:
        return cs.Formula(
            nodetype="formula",
            expression="sqrt([0]*[0]/(x*x)+[1]*[1]/x+[2]*[2])",
            parser="TFormula",
            variables=["JetPt"],
            parameters=list(JER_NSC[key]),
        )

    by_rho = _binning("Rho", JER_RHO_EDGES, [formula("low"), formula("high")])
    return _correction(
        name,
        "Jet pT resolution (toy values)",
        [("JetEta", "real"), ("JetPt", "real"), ("Rho", "real")],
        "PtResolution",
        _binning("JetEta", JER_ETA_EDGES, [by_rho] * (len(JER_ETA_EDGES) - 1)),
    )


def jes_source_correction(name: str, values: Sequence[float]) -> cs.Correction:
    """JME layout of one energy-scale uncertainty source: JetEta, JetPt -> relative shift."""
    n_eta = len(JES_ETA_EDGES) - 1
    return _correction(
        name,
        "Jet energy-scale uncertainty of one source (toy values)",
        [("JetEta", "real"), ("JetPt", "real")],
        "delta",
        cs.MultiBinning(
            nodetype="multibinning",
            inputs=["JetEta", "JetPt"],
            edges=[JES_ETA_EDGES, JES_PT_EDGES],
            content=[v for _ in range(n_eta) for v in values],
            flow="clamp",
        ),
    )


#: Jet ID inputs besides ``eta``.
JET_ID_INPUTS = ["chHEF", "neHEF", "chEmEF", "neEmEF", "muEF", "chMultiplicity",
                 "neMultiplicity", "multiplicity"]  # fmt: skip
#: Jet ID criteria per |eta| region (upper edge): (input, "<" or ">=", threshold), all required.
JET_ID_REGIONS = [
    (2.6, [("chHEF", ">=", 0.01), ("neHEF", "<", 0.99), ("neEmEF", "<", 0.9),
           ("chMultiplicity", ">=", 0.5), ("multiplicity", ">=", 1.5)]),
    (2.7, [("neHEF", "<", 0.9), ("neEmEF", "<", 0.99)]),
    (3.0, [("neHEF", "<", 0.9999)]),
    (5.0, [("neEmEF", "<", 0.9), ("neMultiplicity", ">=", 1.5)]),
]  # fmt: skip
#: Range of every jet ID input (fractions and multiplicities), clamped beyond.
JET_ID_RANGE = (-1.0, 1000.0)


def _cuts(criteria: Sequence[tuple[str, str, float]]):
    """1.0 when every criterion holds, else 0.0: a chain of two-bin binnings."""
    node: float | cs.Binning = 1.0
    low, high = JET_ID_RANGE
    for variable, operator, threshold in reversed(criteria):
        content = [0.0, node] if operator == ">=" else [node, 0.0]
        node = _binning(variable, [low, threshold, high], content)
    return node


def jet_id_correction(name: str = "AK4PUPPI_Tight") -> cs.Correction:
    """JME jet ID layout: eta bins, then the criteria on the constituent fractions (1 pass)."""
    regions = [_cuts(criteria) for _, criteria in JET_ID_REGIONS]
    uppers = [upper for upper, _ in JET_ID_REGIONS]
    edges = [-u for u in reversed(uppers)] + [0.0] + uppers
    content = list(reversed(regions)) + regions
    return _correction(
        name,
        "Jet ID (toy criteria)",
        [("eta", "real"), *[(v, "real") for v in JET_ID_INPUTS]],
        "jetId",
        _binning("eta", edges, content, flow="clamp"),
    )


def write_set(path: str | os.PathLike[str], corrections: Sequence[cs.Correction]) -> None:
    """Write a correction set (stable bytes)."""
    cset = cs.CorrectionSet(schema_version=2, corrections=list(corrections))
    with atomic_path(path) as tmp:
        tmp.write_text(cset.model_dump_json(exclude_unset=True, indent=1) + "\n")


#: Correction names of the Run-2 UL 2018 files (config/eras/2018UL.yaml).
UL18 = {
    "pileup": "Collisions18_UltraLegacy_goldenJSON",
    "muon_id": "NUM_TightID_DEN_TrackerMuons",
    "muon_iso": "NUM_TightRelIso_DEN_TightIDandIPCut",
    "muon_trigger": "NUM_IsoMu24_DEN_CutBasedIdTight_and_PFIsoTight",
    "jer_tag": "Summer19UL18_JRV2_MC",
    "jes_tag": "Summer19UL18_V5_MC",
    "jet_algorithm": "AK4PFchs",
    "jes_sources": JES_SOURCES,
    "tau_es_id": TAU_ES_ID,
    "tau_es_working_points": None,  # the UL energy scale has no working-point inputs
}
#: Correction names of the 2024 files (config/eras/2024.yaml): the Run-3 layouts.
RUN3_2024 = {
    "pileup": "Collisions24_BCDEFGHI_goldenJSON",
    "muon_id": "NUM_TightID_DEN_TrackerMuons",
    "muon_iso": "NUM_TightPFIso_DEN_TightID",
    "muon_trigger": "NUM_IsoMu24_DEN_CutBasedIdTight_and_PFIsoTight",
    "jer_tag": "Summer23BPixPrompt23_RunD_JRV1_MC",
    "jes_tag": "Summer24Prompt24_V1_MC",
    "jet_algorithm": "AK4PFPuppi",
    "jes_sources": {"Total": [0.025, 0.012]},
    "tau_es_id": "DeepTau2018v2p5",
    "tau_es_working_points": ("Medium", "VVLoose"),
}


#: The shipped era files whose names and layouts :func:`write_all` writes.
ERA_NAMES = {"2018UL": UL18, "2024": RUN3_2024}


def write_all(
    directory: str | os.PathLike[str],
    true_interactions: np.ndarray,
    names: Mapping[str, Any] = UL18,
) -> dict[str, Path]:
    """Write every kind of file into ``directory``; return the path of each kind.

    ``true_interactions``: the simulation's ``Pileup_nTrueInt`` the pileup weights are derived for.
    ``names``: the era's correction names and layouts, :data:`UL18` or :data:`RUN3_2024`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {kind: directory / name for kind, name in (
        ("pileup", "puWeights.json"), ("muon", "muon_Z.json"), ("tau", "tau.json"),
        ("btag", "btagging.json"), ("btag_efficiency", "btag_efficiency.json"),
        ("jme", "jet_jerc.json"), ("jet_id", "jetid.json"))}  # fmt: skip
    write_set(
        files["pileup"], [pileup_correction(names["pileup"], pileup_weights(true_interactions))]
    )
    write_set(files["muon"], [muon_correction(names["muon_id"], 0.99),
                              muon_correction(names["muon_iso"], 1.00),
                              muon_correction(names["muon_trigger"], 0.97)])  # fmt: skip
    energy_scale = tau_energy_scale_correction(
        tau_id=names["tau_es_id"], working_points=names["tau_es_working_points"]
    )
    write_set(files["tau"], [tau_correction(), energy_scale])
    write_set(files["btag"], [btag_correction("deepJet_mujets", [4, 5]),
                              btag_correction("deepJet_incl", [0]),
                              btag_correction(RUN3_BTAG["correction"], [5], BTAG_SOURCES),
                              btag_correction(RUN3_BTAG["light_correction"], [0])])  # fmt: skip
    write_set(files["btag_efficiency"], [btag_efficiency_correction()])
    algorithm = names["jet_algorithm"]
    jme = [jer_scale_factor_correction(f"{names['jer_tag']}_ScaleFactor_{algorithm}"),
           jer_resolution_correction(f"{names['jer_tag']}_PtResolution_{algorithm}")]  # fmt: skip
    jme += [jes_source_correction(f"{names['jes_tag']}_{source}_{algorithm}", values)
            for source, values in names["jes_sources"].items()]  # fmt: skip
    write_set(files["jme"], jme)
    write_set(files["jet_id"], [jet_id_correction()])
    return files


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write the correction files")
    parser.add_argument(
        "--pileup-from", help="a NanoAOD simulation file whose Pileup_nTrueInt the pileup "
        "weights are derived for (default: a Poisson profile of mean 30)",
    )  # fmt: skip
    parser.add_argument("--era", choices=sorted(ERA_NAMES), default="2018UL",
                        help="whose correction names and layouts to write")  # fmt: skip
    args = parser.parse_args(argv)
    if args.pileup_from:
        import uproot

        with uproot.open(args.pileup_from) as fin:
            values = fin["Events"]["Pileup_nTrueInt"].array(library="np")
    else:
        values = np.random.default_rng(1).poisson(30, 100_000).astype(np.float64)
    write_all(args.directory, values, ERA_NAMES[args.era])


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
