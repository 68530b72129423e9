"""Datacard export: the combine datacard parses (sections, counts, bin/process/rate lines) and its
observations, rates, shapes and nuisances equal the pyhf workspace's, read independently of the
export: from the workspace JSON and from pyhf's per-sample expected yields at +-1 sigma."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyhf
import pytest
import uproot

from analysis.core.errors import AnalysisError
from analysis.stats import datacard
from tests.conftest import DATA

WORKSPACES = DATA / "workspaces"
#: workspaces the export supports (multichannel.json has a shapesys: refused, tested below)
EXPORTED = ("toy_analysis", "simple", "large")


def parse_datacard(text: str) -> dict:
    """A small combine datacard parser, independent of the writer: the header counts, the order
    of the blocks between ``---`` lines, observations, columns, ids, rates and nuisance lines."""
    card: dict = {"blocks": [[]], "counts": {}, "shapes": [], "nuisances": {}, "rate_params": []}
    card["mc_stats"] = {}
    columns: list = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("---"):
            card["blocks"].append([])
            continue
        key, *values = line.split()
        card["blocks"][-1].append(key)
        if key in ("imax", "jmax", "kmax"):
            card["counts"][key] = int(values[0])
        elif key == "shapes":
            card["shapes"].append(values)
        elif key == "bin" and "observation" not in card:
            card["bins"] = values
        elif key == "observation":
            card["observation"] = dict(zip(card["bins"], map(float, values), strict=True))
        elif key == "bin":
            columns = [[b] for b in values]
        elif key == "process" and all(re.fullmatch(r"-?\d+", v) for v in values):
            card["ids"] = dict(zip((c[1] for c in columns), map(int, values), strict=True))
        elif key == "process":
            columns = [(c[0], p) for c, p in zip(columns, values, strict=True)]
            card["columns"] = columns
        elif key == "rate":
            card["rates"] = dict(zip(columns, map(float, values), strict=True))
        elif values[0] in ("lnN", "shape"):
            assert len(values) == len(columns) + 1, f"{key}: one entry per column"
            card["nuisances"][key] = (values[0], dict(zip(columns, values[1:], strict=True)))
        elif values[0] == "rateParam":
            card["rate_params"].append((key, values[1], values[2], float(values[3]), values[4]))
        elif values[0] == "autoMCStats":
            card["mc_stats"][key] = values[1:]
        else:
            raise AssertionError(f"unknown datacard line: {line}")
    return card


def by_sample(model: pyhf.pdf.Model, parameters) -> dict[tuple[str, str], np.ndarray]:
    """pyhf's expected main-bin yields per (channel, sample) at ``parameters``."""
    yields = np.asarray(model.main_model.expected_data(parameters, return_by_sample=True))
    return {
        (channel, sample): yields[i, model.config.channel_slices[channel]]
        for channel in model.config.channels
        for i, sample in enumerate(model.config.samples)
    }


def shifted(model: pyhf.pdf.Model, name: str, value: float) -> np.ndarray:
    parameters = np.asarray(model.config.suggested_init(), dtype=float)
    parameters[model.config.par_slice(name)] = value
    return parameters


def export(tmp_path: Path, name: str) -> tuple[dict, dict, dict]:
    """Write the datacard of a test workspace; (parsed card, shapes by key, workspace spec)."""
    spec = json.loads((WORKSPACES / f"{name}.json").read_text())
    argv = ["--workspace", str(WORKSPACES / f"{name}.json"), "--datacard",
            str(tmp_path / "datacard.txt"), "--shapes", str(tmp_path / "shapes.root")]  # fmt: skip
    assert datacard.main(argv) == 0
    with uproot.open(tmp_path / "shapes.root") as shapes:
        histograms = {
            key: (shapes[key].values(), shapes[key].variances())
            for key, kind in shapes.classnames(cycle=False).items()
            if kind.startswith("TH1")
        }
    return parse_datacard((tmp_path / "datacard.txt").read_text()), histograms, spec


@pytest.mark.parametrize("name", EXPORTED)
def test_datacard_structure_and_yields_equal_the_workspace(tmp_path, name):
    """Bugs caught: wrong counts (combine refuses the card), a rate that is not the sample's
    yield, data_obs that are not the observations, lost staterror, wrong signal ids."""
    card, shapes, spec = export(tmp_path, name)
    assert [block[0] for block in card["blocks"][:4]] == ["imax", "shapes", "bin", "bin"]
    assert card["shapes"] == [["*", "*", "shapes.root", "$CHANNEL/$PROCESS",
                               "$CHANNEL/$PROCESS_$SYSTEMATIC"]]  # fmt: skip
    channels = [channel["name"] for channel in spec["channels"]]
    processes = {sample["name"] for channel in spec["channels"] for sample in channel["samples"]}
    assert card["counts"] == {
        "imax": len(channels), "jmax": len(processes) - 1, "kmax": len(card["nuisances"])
    }  # fmt: skip
    assert card["bins"] == channels and set(card["ids"]) == processes
    poi = spec["measurements"][0]["config"]["poi"]
    observed = {o["name"]: o["data"] for o in spec["observations"]}
    for channel in spec["channels"]:
        name = channel["name"]
        assert card["observation"][name] == pytest.approx(sum(observed[name]), rel=1e-10)
        np.testing.assert_allclose(shapes[f"{name}/data_obs"][0], observed[name], rtol=1e-12)
        for sample in channel["samples"]:
            column, key = (name, sample["name"]), f"{name}/{sample['name']}"
            assert card["rates"][column] == pytest.approx(sum(sample["data"]), rel=1e-10)
            np.testing.assert_allclose(shapes[key][0], sample["data"], rtol=1e-12)
            stat = [m["data"] for m in sample["modifiers"] if m["type"] == "staterror"]
            np.testing.assert_allclose(shapes[key][1], np.square(stat[0]) if stat else 0.0)
            carries = [m["name"] for m in sample["modifiers"] if m["type"] == "normfactor"]
            assert (card["ids"][sample["name"]] <= 0) == (poi in carries)
    with_stat = {c["name"] for c in spec["channels"] for s in c["samples"] for m in s["modifiers"]
                 if m["type"] == "staterror"}  # fmt: skip
    assert card["mc_stats"] == {channel: ["0", "1"] for channel in with_stat}


@pytest.mark.parametrize("name", EXPORTED)
def test_nuisances_match_pyhf_at_plus_minus_one_sigma(tmp_path, name):
    """Each lnN kappa and each Up/Down template is what pyhf predicts for that sample with the
    parameter at +-1 sigma (normsys x histosys together). Bugs caught: kappas swapped, a shape
    template missing its normalisation, a nuisance on the wrong process."""
    card, shapes, spec = export(tmp_path, name)
    model = pyhf.Workspace(spec).model()
    nominal = by_sample(model, model.config.suggested_init())
    sigmas = {p["name"]: p.get("sigmas", [1.0])[0] for p in spec["measurements"][0]["config"]
              ["parameters"]}  # fmt: skip
    for nuisance, (kind, entries) in card["nuisances"].items():
        centre = model.config.suggested_init()[model.config.par_slice(nuisance)][0]
        width = sigmas.get(nuisance, 1.0) if nuisance == "lumi" else 1.0
        up = by_sample(model, shifted(model, nuisance, centre + width))
        down = by_sample(model, shifted(model, nuisance, centre - width))
        for column, entry in entries.items():
            effect = not all(np.allclose(s[column], nominal[column]) for s in (up, down))
            assert (entry != "-") == effect, (nuisance, column)
            if entry == "-":
                continue
            if kind == "lnN":
                kappas = [float(k) for k in entry.split("/")]
                total = nominal[column].sum()
                expected = [up[column].sum() / total]
                if len(kappas) == 2:
                    expected.insert(0, down[column].sum() / total)
                assert kappas == pytest.approx(expected, rel=1e-9), (nuisance, column)
            else:
                key = f"{column[0]}/{column[1]}_{nuisance}"
                np.testing.assert_allclose(shapes[f"{key}Up"][0], up[column], rtol=1e-9)
                np.testing.assert_allclose(shapes[f"{key}Down"][0], down[column], rtol=1e-9)
    modifiers = {m["name"] for c in spec["channels"] for s in c["samples"] for m in s["modifiers"]
                 if m["type"] in ("normsys", "histosys", "lumi")}  # fmt: skip
    assert set(card["nuisances"]) == modifiers
    # both branches above ran: rate-only (lnN) and shape nuisances were compared
    assert {kind for kind, _ in card["nuisances"].values()} == {"lnN", "shape"}


def test_free_normalisations_become_rate_params(tmp_path):
    """large.json: POI mu_ggH, and mu_qqH a free normalisation of qqH in every category."""
    card, _, spec = export(tmp_path, "large")
    channels = [channel["name"] for channel in spec["channels"]]
    config = next(
        p for p in spec["measurements"][0]["config"]["parameters"] if p["name"] == "mu_qqH"
    )
    assert config["bounds"] == [[-5.0, 10.0]]  # the measurement's, not pyhf's default [0, 10]
    assert card["rate_params"] == [("mu_qqH", c, "qqH", 1.0, "[-5,10]") for c in channels]
    assert card["ids"]["ggH"] == 0 and card["ids"]["qqH"] > 0


def test_bin_edges_from_the_binning_and_a_blinded_header(tmp_path):
    spec = json.loads((WORKSPACES / "simple.json").read_text())
    card = datacard.card_from_workspace(spec)
    datacard.write_shapes(str(tmp_path / "shapes.root"), card, {"SR": [0.0, 0.1, 0.3, 0.6, 1.0]})
    with uproot.open(tmp_path / "shapes.root") as shapes:
        assert shapes["SR/signal"].axis().edges().tolist() == [0.0, 0.1, 0.3, 0.6, 1.0]
    with pytest.raises(AnalysisError, match="channel 'SR' has no 4-bin edges"):
        datacard.write_shapes(str(tmp_path / "other.root"), card, {"SR": [0.0, 1.0]})
    blinded = datacard.header_lines(card, "workspace.json", unblind=False)
    assert any("BLINDED: data_obs is the Asimov prediction" in line for line in blinded)
    assert not any("BLINDED" in line for line in datacard.header_lines(card, "w", unblind=True))


def test_what_combine_cannot_take_stops_with_one_line(tmp_path, capsys):
    """A shapesys has no counterpart; a process carrying the POI in one channel only would be
    scaled by r everywhere in combine. Both stop the export without writing a file."""
    argv = ["--workspace", str(WORKSPACES / "multichannel.json"), "--datacard",
            str(tmp_path / "d.txt"), "--shapes", str(tmp_path / "s.root")]  # fmt: skip
    assert datacard.main(argv) == 1
    assert "(shapesys)" in capsys.readouterr().err and not list(tmp_path.iterdir())
    spec = json.loads((WORKSPACES / "large.json").read_text())
    ggh = spec["channels"][1]["samples"][0]
    assert ggh["name"] == "ggH"
    ggh["modifiers"] = [m for m in ggh["modifiers"] if m["name"] != "mu_ggH"]
    with pytest.raises(AnalysisError, match="ggH carries the POI mu_ggH but not in cat_qqH"):
        datacard.card_from_workspace(spec)
