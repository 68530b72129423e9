"""The one blinding switch: what `unblind` and `inference.asimov` decide, and what is refused."""

from __future__ import annotations

import pytest

from analysis.core.errors import AnalysisError
from analysis.stats.blinding import check_renamed_keys, fit_asimov, gof_data


def config(unblind: bool, asimov: bool | None, external: str | None = None) -> dict:
    return {"unblind": unblind, "inference": {"asimov": asimov, "external_workspace": external}}


@pytest.mark.parametrize(
    ("unblind", "asimov", "expected"),
    [
        (False, None, True),  # the default: blinded, Asimov fits
        (True, None, False),  # one switch unblinds the fits too (the bug: still Asimov)
        (True, True, True),  # expected results on an unblinded analysis
        (True, False, False),
    ],
)
def test_asimov_follows_unblind_unless_set(unblind, asimov, expected):
    assert fit_asimov(config(unblind, asimov)) is expected


def test_fitting_data_while_blinded_is_refused_with_one_line():
    """The combination that fitted blinded bins holding the prediction, pulling mu to 1."""
    with pytest.raises(AnalysisError) as error:
        fit_asimov(config(False, False))
    message = str(error.value)
    assert "\n" not in message
    assert "inference.asimov: false" in message and "unblind: true" in message


def test_a_published_workspace_may_fit_its_data_while_we_are_blinded():
    """README's "Fitting a published pyhf workspace" sets asimov: false and leaves unblind."""
    assert fit_asimov(config(False, False, external="BkgOnly.json")) is False
    assert fit_asimov(config(False, None, external="BkgOnly.json")) is True


def test_the_replaced_key_is_named():
    check_renamed_keys({"histograms": {"blind_threshold": 0.1}, "unblind": False})
    with pytest.raises(AnalysisError, match="histograms.blind was replaced by .* unblind"):
        check_renamed_keys({"histograms": {"blind": False}})


def gof_config(unblind: bool, data: str | None, region: str | None) -> dict:
    return {
        "unblind": unblind,
        "gof": {"data": data, "region": region},
        "histograms": {"control_regions": {"wjets_highmt": {}}},
    }


def test_gof_tests_data_while_blinded_only_in_a_control_region():
    """Blinded, the observed data may be tested in a control region (gof.region), not in the
    signal region; null data stay Asimov; an unknown region is one line naming the known ones:
    catches a control region refused, the signal region let through, or a typo silently testing
    the signal region."""
    assert gof_data(gof_config(False, "observed", "wjets_highmt")) == "observed"
    assert gof_data(gof_config(False, None, "wjets_highmt")) == "asimov"
    assert gof_data(gof_config(True, None, None)) == "observed"
    with pytest.raises(AnalysisError, match="gof.data: observed .* set gof.region"):
        gof_data(gof_config(False, "observed", None))
    with pytest.raises(AnalysisError) as error:
        gof_data(gof_config(True, None, "wjets_high"))
    message = str(error.value)
    assert "\n" not in message and "'wjets_high'" in message and "wjets_highmt" in message
