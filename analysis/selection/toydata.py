"""Built-in toy dataset: NanoAOD-like ROOT files for an H->tautau -> mu tau_h analysis.

Events come from vectorised toy physics (:mod:`analysis.selection.toyphysics`) and a simple
detector response (:mod:`analysis.selection.toydetector`), kept inside a generator-level phase
space (``PHASE_SPACE``); this module adds the generator weights and writes the files.

The output has the CMS NanoAOD layout read by coffea's ``NanoAODSchema``: jagged ``Muon_*``,
``Tau_*``, ``Jet_*`` with ``n<Collection>`` counters, ``MET_*``, ``HLT_IsoMu24``, event keys, and
for simulation ``genWeight`` (some negative), ``*_genPartFlav``, pileup weights, ``LHEScaleWeight``,
``PSWeight`` and a ``Runs`` tree with ``genEventSumw``. The branches are those of NanoAOD v9, or of
v15 with ``toydata.nanoaod: v15`` (:mod:`analysis.selection.toylayout`).

Pseudo-data are drawn from the nominal simulated processes: Poisson(mu * xsec * lumi) events
each, with the truth shifts of ``toydata.truth`` applied (signal strengths, tau_h and jet energy
scales, the tau_h ID scale factor, and optionally one input variable shifted beyond the model's
variations, ``truth.mismodel``), so closure tests know the answer.

Usage: ``python -m analysis.selection.toydata --sample NAME --settings JSON --output FILE.root``.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from analysis.core.config import has_shape_variations, toy_events
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path
from analysis.selection.toydetector import (
    apply_mismodelling,
    apply_tau_id_sf,
    apply_truth_shifts,
    detector_response,
)
from analysis.selection.toylayout import in_layout
from analysis.selection.toyphysics import generate_physics

#: Events generated and written per chunk: bounds memory for any ``scale``.
CHUNK = 100_000

#: NLO-like processes get a fraction of negative generator weights.
NEGATIVE_WEIGHT_FRACTION = {"ZTT": 0.10, "ZL": 0.10, "TT": 0.05, "W": 0.12}
#: Generator-level phase space of every toy sample; `xsec` in the samples file is the cross
#: section inside it (like a filtered production), so that few generated events are wasted.
PHASE_SPACE = {"muon_pt": 20.0, "tau_pt": 25.0, "eta": 2.4}
DATA_RUNS = np.array([315257, 315361, 315420, 316187, 316590, 317080, 319077, 320841])


def _weights(rng: np.random.Generator, reco: dict[str, Any], process: str) -> dict[str, np.ndarray]:
    """genWeight (with negative ones), pileup weights, and scale and parton-shower weights."""
    n = len(reco["pileup"])
    negative = rng.random(n) < NEGATIVE_WEIGHT_FRACTION.get(process, 0.0)
    pileup = reco["pileup"] - 32.0
    # scale variations grow with jet activity and boson pT, so they change acceptance and shapes
    activity = 0.04 + 0.02 * reco["n_extra_jets"] + 0.0004 * reco["boson_pt"]
    log_r, log_f = np.meshgrid(np.log2([0.5, 1.0, 2.0]), np.log2([0.5, 1.0, 2.0]), indexing="ij")
    scale = 1 - activity[:, None] * (1.0 * log_r.ravel()[None, :] + 0.5 * log_f.ravel()[None, :])
    isr = 0.06 * reco["n_extra_jets"] + 0.02
    fsr = 0.03 + 0.0002 * reco["boson_pt"]
    return {
        "genWeight": np.where(negative, -1.0, 1.0).astype(np.float32),
        "puWeight": np.clip(1 + 0.02 * pileup, 0.1, 3.0).astype(np.float32),
        "puWeightUp": np.clip(1 + 0.026 * pileup, 0.1, 3.0).astype(np.float32),
        "puWeightDown": np.clip(1 + 0.014 * pileup, 0.1, 3.0).astype(np.float32),
        "LHEScaleWeight": scale.astype(np.float32),
        "PSWeight": np.stack([1 + isr, 1 + fsr, 1 - isr, 1 - fsr], axis=1).astype(np.float32),
    }


def _columns(reco: dict[str, Any], weights: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """NanoAOD branches (jagged collections as awkward records) for uproot."""
    n = len(reco["pileup"])
    one = np.ones(n, dtype=np.int64)
    muon = {k: v for k, v in reco["muon"].items() if weights is not None or k != "genPartFlav"}
    tau = {k: v for k, v in reco["tau"].items() if weights is not None or k != "genPartFlav"}
    jet = {k: v for k, v in reco["jet"].items() if weights is not None or k != "hadronFlavour"}
    jets = ak.unflatten(ak.zip({k: np.asarray(v) for k, v in jet.items()}), reco["jet_counts"])
    jets = jets[ak.argsort(jets.pt, axis=1, ascending=False)]
    dtypes = {
        "charge": np.int32,
        "decayMode": np.int32,
        "jetId": np.int32,
        "hadronFlavour": np.int32,
        "tightId": bool,
        "genPartFlav": np.uint8,
        "idDeepTau2017v2p1VSjet": np.uint8,
        "idDeepTau2017v2p1VSmu": np.uint8,
    }

    def record(fields: dict[str, np.ndarray], counts: np.ndarray) -> ak.Array:
        return ak.unflatten(
            ak.zip({k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in fields.items()}),
            counts,
        )

    met_x, met_y = reco["met"]
    columns: dict[str, Any] = {
        "Muon": record(muon, one),
        "Tau": record(tau, one),
        "Jet": ak.zip(
            {f: ak.values_astype(jets[f], dtypes.get(f, np.float32)) for f in jets.fields}
        ),
        "MET_pt": np.hypot(met_x, met_y).astype(np.float32),
        "MET_phi": np.arctan2(met_y, met_x).astype(np.float32),
        "MET_MetUnclustEnUpDeltaX": reco["met_uncl"][0].astype(np.float32),
        "MET_MetUnclustEnUpDeltaY": reco["met_uncl"][1].astype(np.float32),
        "HLT_IsoMu24": reco["trigger"],
        "PV_npvs": np.maximum(reco["pileup"] * 0.7, 1).astype(np.int32),
    }
    if weights is not None:
        columns["Pileup_nTrueInt"] = reco["pileup"].astype(np.float32)
        for name in ("genWeight", "puWeight", "puWeightUp", "puWeightDown"):
            columns[name] = weights[name]
        # jagged like NanoAOD (counters nLHEScaleWeight, nPSWeight), not fixed-size arrays
        for name in ("LHEScaleWeight", "PSWeight"):
            values = weights[name]
            columns[name] = ak.unflatten(values.ravel(), np.full(n, values.shape[1]))
    return columns


def _generate(rng: np.random.Generator, process: str, n: int, tune: str) -> dict[str, Any]:
    """``n`` events of ``process`` inside the generator-level phase space (see PHASE_SPACE)."""
    batches, accepted = [], 0
    while accepted < n:
        events = generate_physics(rng, process, max(2 * (n - accepted), 1000), tune)
        reco = detector_response(rng, events, process)
        keep = _in_phase_space(reco)
        batches.append(_subset(reco, keep))
        accepted += int(keep.sum())
    return _subset(_concatenate(batches), np.arange(n))


def _in_phase_space(reco: Mapping[str, Any]) -> np.ndarray:
    """The generator filter: a muon and a tau_h candidate roughly inside the detector acceptance."""
    muon, tau = reco["muon"], reco["tau"]
    return (
        (muon["pt"] > PHASE_SPACE["muon_pt"])
        & (np.abs(muon["eta"]) < PHASE_SPACE["eta"])
        & (tau["pt"] > PHASE_SPACE["tau_pt"])
        & (np.abs(tau["eta"]) < PHASE_SPACE["eta"])
    )


def _subset(reco: Mapping[str, Any], selection: np.ndarray) -> dict[str, Any]:
    """Events picked by a boolean mask or an index array, jets (flat, with counts) included."""
    index = np.flatnonzero(selection) if selection.dtype == bool else selection
    jet_start = np.concatenate([[0], np.cumsum(reco["jet_counts"])])
    jet_index = np.concatenate(
        [np.arange(jet_start[i], jet_start[i + 1]) for i in index] or [np.zeros(0, dtype=np.int64)]
    )
    return {
        key: _map_arrays(operator.itemgetter(jet_index if key == "jet" else index), value)
        for key, value in reco.items()
    }


def _concatenate(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The events of all batches, in order."""
    return _map_arrays(lambda *arrays: np.concatenate(arrays), *batches)


def _map_arrays(function: Callable[..., np.ndarray], *structures: Any) -> Any:
    """``function`` of the arrays at the same place in structures of dicts and tuples of arrays."""
    first = structures[0]
    if isinstance(first, Mapping):
        return {key: _map_arrays(function, *(s[key] for s in structures)) for key in first}
    if isinstance(first, tuple):
        return tuple(_map_arrays(function, *items) for items in zip(*structures, strict=True))
    return function(*structures)


def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent, platform-stable stream per (seed, name...): never Python's hash()."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, *(zlib.crc32(x.encode()) for x in names)])
    )


def _simulation_chunks(
    name: str, sample: Mapping[str, Any], settings: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """Simulated events with generator weights, chunk by chunk, each chunk with its own stream."""
    toy = settings["toydata"]
    total = toy_events(sample, toy["scale"])
    offset = zlib.crc32(name.encode()) % 1000 * 10_000_000
    for start in range(0, total, CHUNK):
        n = min(CHUNK, total - start)
        rng = _rng(toy["seed"], name, str(start))
        reco = _generate(rng, sample["process"], n, sample["toy"].get("tune", "nominal"))
        columns = _columns(reco, _weights(rng, reco, sample["process"]))
        columns["run"] = np.ones(n, dtype=np.uint32)
        columns["luminosityBlock"] = (1 + (start + np.arange(n)) // 1000).astype(np.uint32)
        columns["event"] = (offset + start + 1 + np.arange(n)).astype(np.uint64)
        yield columns


def _data_chunks(settings: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Pseudo-data: every nominal simulated process at Poisson(mu * xsec * lumi) events."""
    toy, samples = settings["toydata"], settings["samples"]
    truth = toy.get("truth") or {}
    mu = truth.get("mu") or {}
    nuisances = truth.get("nuisances") or {}
    produced = 0
    for name, sample in samples.items():
        if "toy" not in sample or not has_shape_variations(sample):
            continue
        rng = _rng(toy["seed"], "data", name)
        expected = mu.get(sample["process"], 1.0) * sample["xsec"] * settings["lumi"]
        total = int(rng.poisson(expected))
        for start in range(0, total, CHUNK):
            n = min(CHUNK, total - start)
            reco = _generate(rng, sample["process"], n, "nominal")
            apply_truth_shifts(reco, nuisances, settings["variations"])
            apply_mismodelling(reco, truth.get("mismodel"))
            apply_tau_id_sf(rng, reco, settings.get("tau_id_sf"))
            columns = _columns(reco, None)
            order = rng.permutation(n)
            columns = {key: value[order] for key, value in columns.items()}
            columns["run"] = rng.choice(DATA_RUNS, n).astype(np.uint32)
            columns["luminosityBlock"] = rng.integers(1, 2000, n).astype(np.uint32)
            columns["event"] = (produced + 1 + np.arange(n)).astype(np.uint64) * 7 + np.uint64(3)
            produced += n
            yield columns


def _nanoaod_name(collection: str, field: str) -> str:
    """NanoAOD branch naming: ``Muon_pt`` (with counter ``nMuon``)."""
    return f"{collection}_{field}"


def _branch_types(columns: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: values.type if isinstance(values, ak.Array) else values.dtype
        for name, values in columns.items()
    }


def generate_sample(
    sample: str, settings: Mapping[str, Any], output: str | os.PathLike[str]
) -> None:
    """Generate one toy sample and write it as a NanoAOD-like ROOT file.

    Args:
        sample: name of a sample with a ``toy`` block in ``settings["samples"]``.
        settings: ``samples`` (the samples file's mapping), ``toydata``, ``lumi``, ``variations``
            and ``tau_id_sf`` (a correctionlib file and correction, or None) from the config.
        output: the ROOT file to write (atomically).
    """
    spec = settings["samples"].get(sample)
    if spec is None or "toy" not in spec:
        raise AnalysisError(
            f"toydata: sample '{sample}' has no `toy` block in the samples file; "
            "add one or list its `files`"
        )
    simulation = spec["type"] == "mc"
    chunks = _simulation_chunks(sample, spec, settings) if simulation else _data_chunks(settings)
    sumw = count = 0.0
    tree = None
    with atomic_path(output) as tmp, uproot.recreate(tmp) as fout:
        for generated in chunks:
            columns = in_layout(generated, settings["toydata"]["nanoaod"])
            if tree is None:
                tree = fout.mktree("Events", _branch_types(columns), field_name=_nanoaod_name)
            tree.extend(columns)
            if simulation:
                sumw += float(np.sum(columns["genWeight"], dtype=np.float64))
                count += len(columns["genWeight"])
        if tree is None:
            raise AnalysisError(
                f"toydata: sample '{sample}' would have no events; "
                "raise its event count or the luminosity"
            )
        runs = {"run": np.array([1], dtype=np.uint32)}
        if simulation:
            runs.update(
                genEventCount=np.array([count], dtype=np.int64),
                genEventSumw=np.array([sumw]),
                genEventSumw2=np.array([count]),
            )
        fout["Runs"] = runs


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate one toy NanoAOD-like sample.")
    parser.add_argument("--sample", required=True)
    parser.add_argument(
        "--settings", required=True, help="samples, toydata, lumi, variations, tau_id_sf as JSON"
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    generate_sample(args.sample, json.loads(args.settings), Path(args.output))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
