"""Impacts (analysis/stats/ranking.py) against cabinetry and plain pyhf fits, relative plus
absolute tolerance (tests/stats/references.py), chunking and the ranked parameters."""

from __future__ import annotations

import dataclasses
import json

import cabinetry
import numpy as np
import pyhf
import pytest

from analysis.core.errors import AnalysisError
from analysis.stats import fit as fit_module
from analysis.stats import model as model_utils
from analysis.stats import ranking
from analysis.stats.results import RankingChunk
from tests.stats.references import (
    IMPACT_RELATIVE,
    REFERENCE_TOL,
    SETTINGS,
    WORKSPACES,
    assert_impact,
    load,
    pyhf_fixed_fit,
)


def test_ranking_matches_cabinetry():
    setup = load("multichannel")
    record = fit_module.fit(setup, SETTINGS)
    labels = ranking.ranked_labels(record)
    # in chunks, as the workflow runs it
    size = 7
    chunks = []
    for chunk in range(ranking.chunk_count_for(len(labels), size)):
        selected = ranking.chunk_labels(labels, chunk, size)
        ranked = ranking.impacts(setup, record, selected, SETTINGS)
        chunks.append(
            RankingChunk(
                setup.pois[0], chunk, len(labels), ranked.impacts, ranked.refits, ranked.fallbacks
            )
        )
    ours = ranking.gather(chunks, ["chunk"] * len(chunks)).impacts
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    fit_results = cabinetry.fit.fit(setup.model, setup.data, tolerance=REFERENCE_TOL)
    reference = cabinetry.fit.ranking(
        setup.model, setup.data, fit_results=fit_results, tolerance=REFERENCE_TOL
    )
    by_name = {entry.parameter: entry for entry in ours}
    assert set(by_name) == set(reference.labels)
    for i, label in enumerate(reference.labels):
        entry = by_name[label]
        for key, values in (
            ("impact_prefit_up", reference.prefit_up),
            ("impact_prefit_down", reference.prefit_down),
            ("impact_postfit_up", reference.postfit_up),
            ("impact_postfit_down", reference.postfit_down),
        ):
            assert_impact(getattr(entry, key), values[i], IMPACT_RELATIVE, (label, key))
    # sorted by decreasing total post-fit impact (cabinetry returns the model's order)
    totals = np.abs(reference.postfit_up) + np.abs(reference.postfit_down)
    expected_order = [reference.labels[i] for i in np.argsort(-totals, kind="stable")]
    assert [entry.parameter for entry in ours[:5]] == expected_order[:5]


def test_ranking_of_the_large_workspace_against_pyhf_fits():
    """Impacts of a few of the 32 ranked parameters, recomputed with plain pyhf fits."""
    setup = load("large")
    result = fit_module.fit(setup, SETTINGS)
    labels = ["jet_es", "staterror_cat_ggH[4]", "mu_qqH"]
    impacts = {
        impact.parameter: impact
        for impact in ranking.impacts(setup, result, labels, SETTINGS).impacts
    }
    names = setup.model.config.par_names
    poi = setup.model.config.poi_index
    widths = model_utils.prefit_uncertainties(setup.model)
    for label in labels:
        i = names.index(label)
        for kind, width in (("prefit", widths[i]), ("postfit", result.uncertainties[i])):
            for sign, direction in ((1, "up"), (-1, "down")):
                got = getattr(impacts[label], f"impact_{kind}_{direction}")
                if width == 0:  # a free parameter has no pre-fit impact
                    assert got == 0.0
                    continue
                values, _ = pyhf_fixed_fit(setup, {label: result.values[i] + sign * width})
                expected = values[poi] - result.values[poi]
                assert_impact(got, expected, IMPACT_RELATIVE, (label, kind, direction))
    assert impacts["jet_es"].pull == pytest.approx(result.values[names.index("jet_es")], abs=1e-12)


def test_ranking_clips_shifts_at_the_bounds():
    spec = json.loads((WORKSPACES / "simple.json").read_text())
    spec["measurements"][0]["config"]["parameters"].append(
        {"name": "bkg_norm", "bounds": [[-0.5, 5.0]]}
    )
    workspace = pyhf.Workspace(spec)
    setup = model_utils.build(workspace, model_utils.ModelSettings())
    result = fit_module.fit(setup, SETTINGS)
    (impact,) = ranking.impacts(setup, result, ["bkg_norm"], SETTINGS).impacts
    assert "prefit_down" in impact.clipped and "prefit_up" not in impact.clipped
    values, _ = pyhf_fixed_fit(setup, {"bkg_norm": -0.5})
    poi = setup.model.config.poi_index
    expected = values[poi] - result.values[poi]
    assert_impact(impact.impact_prefit_down, expected, IMPACT_RELATIVE, "bkg_norm prefit_down")


def test_ranking_chunks_cover_every_parameter_once():
    labels = [f"p{i}" for i in range(11)]
    chunks = [ranking.chunk_labels(labels, c, 4) for c in range(ranking.chunk_count_for(11, 4))]
    assert [len(chunk) for chunk in chunks] == [4, 4, 3]
    assert sum(chunks, []) == labels
    with pytest.raises(AnalysisError, match="chunk 3 does not exist"):
        ranking.chunk_labels(labels, 3, 4)


def test_ranked_parameters_leave_out_poi_fixed_and_excluded(tmp_path, capsys):
    setup = model_utils.setup_from_files(WORKSPACES / "simple.json", {})
    fit = fit_module.fit(setup, SETTINGS)
    labels = ["mu", "lumi", "fixed_one", "staterror_sr[0]", "staterror_sr[1]", "xsec_B"]
    document = dataclasses.replace(
        fit, poi="mu", fixed=("fixed_one",), labels=tuple(labels), values=np.zeros(6),
        uncertainties=np.ones(6), correlation=np.eye(6),
    )  # fmt: skip
    assert ranking.ranked_labels(document) == labels[1:2] + labels[3:]
    assert ranking.ranked_labels(document, ["staterror_*"]) == ["lumi", "xsec_B"]
    document.write(tmp_path / "fit.json")
    assert ranking.chunk_count(tmp_path / "fit.json", 1, ["staterror_*", "lumi"]) == 1
    # excluding everything is an error naming the key, not an empty ranking
    fit_json = tmp_path / "real_fit.json"
    fit.write(fit_json)
    code = ranking.main([
        "chunk", "--workspace", str(WORKSPACES / "simple.json"), "--settings", "{}",
        "--fit", str(fit_json), "--chunk", "0", "--chunk-size", "2", "--exclude", "*",
        "--output", str(tmp_path / "chunk.json"),
    ])  # fmt: skip
    assert code == 1 and not (tmp_path / "chunk.json").exists()
    assert "inference.ranking.exclude" in capsys.readouterr().err
