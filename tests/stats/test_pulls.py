"""Pulls and constraints (analysis/stats/pulls.py) against the priors read from the workspace
JSON by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.stats import pulls
from tests.stats.references import WORKSPACES

#: The constrained modifier types of each test workspace.
MODIFIERS = {
    "simple": {"lumi", "normsys", "histosys"},
    "multichannel": {"lumi", "normsys", "histosys", "staterror", "shapesys"},
    "large": {"lumi", "normsys", "histosys", "staterror"},
}


def test_pulls_from_the_workspace_by_hand(fitted):
    name, setup, result, record = fitted
    after_fit = pulls.pulls(setup, record)
    constrained, free = after_fit.constrained, after_fit.unconstrained
    spec = json.loads((WORKSPACES / f"{name}.json").read_text())
    # pre-fit centre and width of each constrained parameter, straight from the JSON
    prior = {"lumi": (1.0, 0.02)}
    staterror: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            for modifier in sample["modifiers"]:
                kind, label = modifier["type"], modifier["name"]
                if kind in ("normsys", "histosys"):
                    prior[label] = (0.0, 1.0)
                elif kind == "shapesys":
                    relative = np.asarray(modifier["data"]) / np.asarray(sample["data"])
                    for i, width in enumerate(relative):
                        prior[f"{label}[{i}]"] = (1.0, width)
                elif kind == "staterror":
                    nominal, error = staterror.get(label, (0.0, 0.0))
                    staterror[label] = (
                        nominal + np.asarray(sample["data"]),
                        error + np.asarray(modifier["data"]) ** 2,
                    )
    for label, (nominal, error2) in staterror.items():
        for i, width in enumerate(np.sqrt(error2) / nominal):
            prior[f"{label}[{i}]"] = (1.0, width)
    assert {pull.parameter for pull in constrained} == set(prior)
    labels = setup.model.config.par_names
    for pull in constrained:
        centre, width = prior[pull.parameter]
        i = labels.index(pull.parameter)
        assert pull.prefit_uncertainty == pytest.approx(width, rel=1e-9)
        assert pull.pull == pytest.approx((result.values[i] - centre) / width, rel=1e-9)
        assert pull.constraint == pytest.approx(result.uncertainties[i] / width, rel=1e-9)
    normfactors = {
        modifier["name"]
        for channel in spec["channels"]
        for sample in channel["samples"]
        for modifier in sample["modifiers"]
        if modifier["type"] == "normfactor"
    }
    assert {parameter.parameter for parameter in free} == normfactors
    # every kind of constrained modifier of each workspace is reported under its type (asserted for
    # each workspace, not only the one with all five kinds)
    assert {pull.modifier for pull in constrained} == MODIFIERS[name]
