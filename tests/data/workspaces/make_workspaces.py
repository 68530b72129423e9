"""Write the small pyhf workspaces the inference tests run on (deterministic; rerun to regenerate).

    python tests/data/workspaces/make_workspaces.py

- ``simple.json``: one channel, signal (normfactor ``mu``) on a background with a normsys, a
  histosys and the luminosity.
- ``multichannel.json``: a signal and a control region sharing a free background normalisation,
  with staterror (Gaussian MC statistics) and shapesys (Poisson-constrained per-bin uncertainty).
- ``large.json``: an H->tautau-like model with three categories, two signal strengths
  (``mu_ggH``, ``mu_qqH``) and 33 parameters in all.
- ``patchset.json``: a pyhf PatchSet with two signal hypotheses for ``simple.json``, as published
  on HEPData next to a background-only workspace.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf

HERE = Path(__file__).resolve().parent
LUMI = {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}


def _histosys(name: str, nominal: list[float], up: list[float], down: list[float]) -> dict:
    return {"name": name, "type": "histosys", "data": {"hi_data": up, "lo_data": down}}


def _normsys(name: str, hi: float, lo: float) -> dict:
    return {"name": name, "type": "normsys", "data": {"hi": hi, "lo": lo}}


def _workspace(channels: list[dict], observations: dict, pois: str, parameters: list) -> dict:
    return {
        "version": "1.0.0",
        "channels": channels,
        "observations": [{"name": name, "data": data} for name, data in observations.items()],
        "measurements": [
            {"name": "meas", "config": {"poi": pois, "parameters": parameters}},
        ],
    }


def simple() -> dict:
    """One channel, four bins."""
    bkg = [50.0, 40.0, 30.0, 20.0]
    channel = {
        "name": "SR",
        "samples": [
            {
                "name": "signal",
                "data": [2.0, 5.0, 9.0, 4.0],
                "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                ],
            },
            {
                "name": "background",
                "data": bkg,
                "modifiers": [
                    _normsys("bkg_norm", 1.10, 0.92),
                    _histosys("bkg_shape", bkg, [53.0, 41.0, 29.0, 18.5], [47.5, 39.0, 31.0, 21.0]),
                    {"name": "lumi", "type": "lumi", "data": None},
                ],
            },
        ],
    }
    return _workspace([channel], {"SR": [57.0, 49.0, 43.0, 25.0]}, "mu", [LUMI])


def multichannel() -> dict:
    """A signal region and a control region, staterror and shapesys, a free normalisation."""
    sr_bkg, cr_bkg = [30.0, 25.0, 18.0, 10.0], [200.0, 150.0, 90.0]
    sr_fakes, cr_fakes = [8.0, 6.0, 5.0, 3.0], [40.0, 30.0, 20.0]
    sr = {
        "name": "SR",
        "samples": [
            {
                "name": "signal",
                "data": [1.5, 4.0, 7.0, 6.0],
                "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                    _normsys("sig_theory", 1.05, 0.95),
                ],
            },
            {
                "name": "background",
                "data": sr_bkg,
                "modifiers": [
                    {"name": "bkg_norm", "type": "normfactor", "data": None},
                    {"name": "staterror_SR", "type": "staterror", "data": [2.0, 1.8, 1.5, 1.2]},
                    _histosys("jes", sr_bkg, [31.5, 26.0, 18.2, 9.7], [28.8, 24.1, 17.7, 10.4]),
                ],
            },
            {
                "name": "fakes",
                "data": sr_fakes,
                "modifiers": [
                    {"name": "fakes_stat_SR", "type": "shapesys", "data": [2.0, 1.5, 1.5, 1.0]},
                    {"name": "staterror_SR", "type": "staterror", "data": [1.0, 0.8, 0.7, 0.5]},
                ],
            },
        ],
    }
    cr = {
        "name": "CR",
        "samples": [
            {
                "name": "background",
                "data": cr_bkg,
                "modifiers": [
                    {"name": "bkg_norm", "type": "normfactor", "data": None},
                    {"name": "staterror_CR", "type": "staterror", "data": [6.0, 5.0, 4.0]},
                    _histosys("jes", cr_bkg, [206.0, 153.0, 90.5], [195.0, 147.5, 89.0]),
                    {"name": "lumi", "type": "lumi", "data": None},
                ],
            },
            {
                "name": "fakes",
                "data": cr_fakes,
                "modifiers": [
                    {"name": "fakes_stat_CR", "type": "shapesys", "data": [6.0, 5.0, 4.0]},
                ],
            },
        ],
    }
    observations = {"SR": [44.0, 41.0, 33.0, 21.0], "CR": [251.0, 176.0, 117.0]}
    return _workspace([sr, cr], observations, "mu", [LUMI])


def large() -> dict:
    """Three categories of an H->tautau-like fit: 2 POIs, 15 staterror bins, 33 parameters."""
    rng = np.random.default_rng(6)
    edges = np.linspace(0.0, 1.0, 6)
    centres = 0.5 * (edges[1:] + edges[:-1])
    norms = {"ggH": 40.0, "qqH": 15.0, "ZTT": 400.0, "TT": 120.0, "W": 90.0, "QCD": 70.0}
    # fraction of each process in the categories, and its shape over the NN score
    category_fractions = {
        "cat_ggH": {"ggH": 0.6, "qqH": 0.2, "ZTT": 0.30, "TT": 0.3, "W": 0.4, "QCD": 0.4},
        "cat_qqH": {"ggH": 0.1, "qqH": 0.6, "ZTT": 0.05, "TT": 0.3, "W": 0.2, "QCD": 0.2},
        "cat_ZTT": {"ggH": 0.3, "qqH": 0.2, "ZTT": 0.65, "TT": 0.4, "W": 0.4, "QCD": 0.4},
    }
    slopes = {"ggH": 3.0, "qqH": 3.5, "ZTT": -1.5, "TT": -0.5, "W": -1.0, "QCD": -2.0}
    xsec = {"ggH": 1.06, "qqH": 1.04, "ZTT": 1.04, "TT": 1.06, "W": 1.10, "QCD": 1.20}
    histosys_sizes = {
        "tau_es": 0.03, "jet_es": 0.04, "met_uncl": 0.015, "pileup": 0.01,
        "scale_muR": 0.02, "scale_muF": 0.015, "ps_isr": 0.02, "ps_fsr": 0.025,
    }  # fmt: skip
    channels, observations = [], {}
    for i_cat, (category, fractions) in enumerate(category_fractions.items()):
        samples, total = [], np.zeros(len(centres))
        for process, norm in norms.items():
            shape = np.exp(slopes[process] * centres)
            nominal = norm * fractions[process] * shape / shape.sum()
            total += nominal
            modifiers = []
            if process in ("ggH", "qqH"):
                modifiers.append({"name": f"mu_{process}", "type": "normfactor", "data": None})
            if process != "QCD":
                modifiers.append({"name": "lumi", "type": "lumi", "data": None})
                modifiers.append(
                    {
                        "name": "tau_id",
                        "type": "normsys",
                        "data": {"hi": 1.05, "lo": 0.95},
                    }
                )
            name = "norm_QCD" if process == "QCD" else f"xsec_{process}"
            modifiers.append(_normsys(name, xsec[process], 2.0 - xsec[process]))
            for j, (syst, size) in enumerate(histosys_sizes.items()):
                if process == "QCD" and syst != "met_uncl":
                    continue
                # a tilt that differs per systematic, process and category
                tilt = size * np.cos(1.7 * j + 0.9 * i_cat + 0.3 * len(process)) * (2 * centres - 1)
                scale = 1.0 + 0.3 * size * np.sin(j + i_cat)
                up = nominal * scale * (1.0 + tilt)
                down = nominal / scale * (1.0 - tilt)
                modifiers.append(
                    _histosys(syst, nominal, up.round(4).tolist(), down.round(4).tolist())
                )
            modifiers.append(
                {
                    "name": f"staterror_{category}",
                    "type": "staterror",
                    "data": (0.03 * nominal + 0.05 * np.sqrt(nominal)).round(4).tolist(),
                }
            )
            samples.append(
                {"name": process, "data": nominal.round(4).tolist(), "modifiers": modifiers}
            )
        channels.append({"name": category, "samples": samples})
        observations[category] = total
    # pseudo-data: mu_ggH = 1.3, mu_qqH = 0.7, drawn once
    for channel in channels:
        expected = np.zeros(len(centres))
        for sample in channel["samples"]:
            factor = {"ggH": 1.3, "qqH": 0.7}.get(sample["name"], 1.0)
            expected += factor * np.asarray(sample["data"])
        observations[channel["name"]] = rng.poisson(expected).astype(float).tolist()
    # signal strengths may go negative: the test compares impacts with cabinetry, which does not
    # clip shifted parameters at their bounds
    pois = [{"name": f"mu_{p}", "bounds": [[-5.0, 10.0]], "inits": [1.0]} for p in ("ggH", "qqH")]
    return _workspace(channels, observations, "mu_ggH", [LUMI, *pois])


def patchset(background_only: dict) -> dict:
    """Two signal hypotheses (signal yields x1 and x3) for ``simple.json``, as a pyhf PatchSet."""
    patches = []
    for name, factor in (("signal_low", 1.0), ("signal_high", 3.0)):
        data = [factor * value for value in background_only["channels"][0]["samples"][0]["data"]]
        patches.append(
            {
                "metadata": {"name": name, "values": [factor]},
                "patch": [{"op": "replace", "path": "/channels/0/samples/0/data", "value": data}],
            }
        )
    return {
        "version": "1.0.0",
        "metadata": {
            "description": "signal hypotheses for the simple test workspace",
            "digests": {"sha256": pyhf.utils.digest(background_only)},
            "labels": ["signal_scale"],
            "references": {"hepdata": "ins0000000"},
        },
        "patches": patches,
    }


def main() -> None:
    """Write every workspace (validated by pyhf) next to this script."""
    workspaces = {"simple": simple(), "multichannel": multichannel(), "large": large()}
    for name, spec in workspaces.items():
        pyhf.Workspace(spec)
        (HERE / f"{name}.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    spec = patchset(workspaces["simple"])
    pyhf.PatchSet(spec)
    (HERE / "patchset.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
