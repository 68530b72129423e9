"""The typed results containers: every file reads back to the same bytes, and a missing or
malformed file is one error line naming the file and the stage to rerun."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analysis.core.errors import AnalysisError
from analysis.core.provenance import GitState
from analysis.stats import results

FIT = results.FitResults(
    poi="mu",
    pois=("mu",),
    asimov=False,
    converged=True,
    twice_nll=12.5,
    labels=("lumi", "mu", "staterror_sr[0]"),
    values=np.array([1.01, 1.2, 0.98]),
    uncertainties=np.array([0.02, 0.3, 0.0]),
    correlation=np.array([[1.0, -0.1, 0.0], [-0.1, 1.0, 0.0], [0.0, 0.0, 0.0]]),
    fixed=("staterror_sr[0]",),
    goodness_of_fit=results.GoodnessOfFit(3.2, 4, 0.52),
    attempts=(results.Attempt(1, 1e-4, "start", True, 1e-6, 12.5),),
    workspace_sha256="abc",
    versions={"python": "3.11.9", "pyhf": "0.7.6", "scipy": None},
)
IMPACT = results.Impact(
    "lumi", "lumi", 1.01, 0.02, 0.02, 0.5, 1.0, 0.1, -0.1, 0.09, -0.08, ("prefit_down",), True
)
FREE = results.Impact(
    "bkg_norm", "normfactor", 1.1, 0.1, 0.0, None, None, 0.0, 0.0, 0.2, -0.2, (), True
)

EXAMPLES = [
    FIT,
    results.PullsResults(
        "mu",
        False,
        (results.Pull("lumi", "lumi", 1.01, 0.02, 1.0, 0.02, 0.5, 1.0),),
        (results.FreeParameter("bkg_norm", "normfactor", 1.1, 0.1),),
    ),
    results.RankingChunk("mu", 0, 2, (IMPACT, FREE), 7, 1),
    results.RankingResults((FREE, IMPACT)),
    results.ScanChunk(("mu",), 1, 3, (results.ScanPoint((0.5,), 13.0, True),)),
    results.ScanResults(
        "mu", (1.2, 0.3), (0.5, 1.2, 2.0), (4.0, 0.0, 5.0), True, (0.9, 1.5), (None, 1.8)
    ),
    results.Scan2DResults(
        ("mu_a", "mu_b"),
        (0.0, 1.0),
        (0.0, 2.0),
        np.array([[1.0, 2.0], [0.0, 3.0]]),
        {"mu_a": (1.0, 0.4), "mu_b": (0.0, 0.8)},
        False,
    ),
    results.SignificanceResults(True, {"mu": results.Significance("mu", 0.01, 2.3, 0.02, 2.05)}),
    results.LimitResults(False, 0.95, {"mu": results.Limit(2.1, 0.8, 1.1, 1.5, 2.1, 2.9)}),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: type(example).__name__)
def test_written_files_read_back_to_the_same_bytes(example, tmp_path):
    example.write(tmp_path / "first.json")
    back = type(example).read(tmp_path / "first.json")
    back.write(tmp_path / "second.json")
    first = (tmp_path / "first.json").read_text()
    assert first == (tmp_path / "second.json").read_text()
    assert first == json.dumps(example.to_json(), indent=2, sort_keys=True) + "\n"


def test_fit_results_in_model_order():
    assert FIT.bestfit("mu") == (1.2, 0.3)
    np.testing.assert_allclose(FIT.covariance[0, 1], -0.1 * 0.02 * 0.3)
    document = FIT.to_json()
    assert document["bestfit"]["mu"] == [1.2, 0.3] and document["minuit"][0]["start"] == "start"
    assert document["correlation"]["parameters"] == ["lumi", "mu", "staterror_sr[0]"]
    assert results.LimitResults.from_json(EXAMPLES[-1].to_json()).pois["mu"].expected_band == (
        0.8, 1.1, 1.5, 2.1, 2.9,
    )  # fmt: skip


def broken(document: dict, change: str) -> dict:
    """``document`` with one defect."""
    document = json.loads(json.dumps(document))
    if change == "missing":
        del document["pois"]
    elif change == "type":
        document["converged"] = "yes"
    elif change == "unknown":
        document["extra"] = 1
    elif change == "bestfit":
        document["bestfit"]["mu"] = [1.2]
    elif change == "labels":
        del document["bestfit"]["lumi"]
    return document


@pytest.mark.parametrize(
    "change, reason",
    [
        ("missing", "no 'pois'"),
        ("type", "'converged' is not a bool"),
        ("unknown", "unknown key 'extra'"),
        ("bestfit", "'bestfit' has 1 entries, not 2"),
        ("labels", "'bestfit' and 'correlation' name different parameters"),
    ],
)
def test_a_malformed_file_is_one_line_naming_it(tmp_path, change, reason):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(broken(FIT.to_json(), change)))
    with pytest.raises(AnalysisError) as error:
        results.FitResults.read(path)
    message = str(error.value)
    assert message == f"{path}: not a valid fit result ({reason}); rerun the fit stage"


def test_other_files_name_their_stage(tmp_path):
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(
        AnalysisError, match=r"\('ranking' is not a list\); rerun the ranking stage"
    ):
        results.RankingResults.read(path)
    document = EXAMPLES[1].to_json()
    document["constrained"][0]["pull"] = None
    path.write_text(json.dumps(document))
    with pytest.raises(AnalysisError, match=r"'pull' is not a float\); rerun the pulls stage"):
        results.PullsResults.read(path)
    with pytest.raises(AnalysisError, match="file not found; run the stage that produces it"):
        results.ScanResults.read(tmp_path / "scan_mu.json")
    path.write_text("{")
    with pytest.raises(AnalysisError, match="not valid JSON"):
        results.LimitResults.read(path)


def test_fit_provenance_reads_back_and_may_be_absent(tmp_path):
    recorded = results.Provenance(GitState("0123abc", True), "f00d")
    dataclasses.replace(FIT, provenance=recorded).write(tmp_path / "fit.json")
    # a nested entry written as a list, or read back as a plain dict, would fail here
    assert results.FitResults.read(tmp_path / "fit.json").provenance == recorded
    assert json.loads((tmp_path / "fit.json").read_text())["provenance"] == {
        "git": {"commit": "0123abc", "dirty": True}, "settings_sha256": "f00d"
    }  # fmt: skip
    # a fit.json written before provenance was recorded still reads (a required key would stop
    # the pulls and ranking of every existing results directory)
    older = FIT.to_json()
    del older["provenance"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert results.FitResults.read(tmp_path / "older.json").provenance is None
