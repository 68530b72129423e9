"""Histograms: values against numpy, one pass per input, binning, QCD estimate, blinding, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from analysis.core.errors import AnalysisError
from analysis.core.io import write_tree
from analysis.stats import histograms as histograms_module
from analysis.stats.binning import merge_from_right, signal_quantile_edges
from analysis.stats.histograms import (
    check_processes,
    fill_sample,
    merge,
    read_histograms,
    write_histograms,
    yields_tables,
)

CLASSES = ["sig", "bkg"]
WEIGHTS = {"generator": "genWeight", "variations": {"pileup": {"up": "a", "down": "b"}}}
EDGES = {"sig": [0.0, 0.5, 0.75, 1.0], "bkg": [0.0, 0.6, 1.0], "cr": [50.0, 100.0, 200.0]}


@pytest.fixture()
def settings():
    return {
        "signals": ["H"],
        "signal_region": {"is_os": 1, "mt_1": [None, 50.0]},
        "control_regions": {
            "cr": {
                "selection": {"is_os": 1, "mt_1": [50.0, None]},
                "observable": "mt_1",
                "edges": EDGES["cr"],
            },
        },  # fmt: skip
        "binning": {
            "mode": "auto",
            "fine_bins": 10,
            "min_background": 1.0,
            "max_relative_uncertainty": 0.5,
            "bins": 4,
            "edges": {},
        },  # fmt: skip
        "qcd": {
            "from_data": True,
            "process": "QCD",
            "os_ss_factor": 1.2,
            "norm_uncertainty": 0.2,
            "shape_tilt": 0.1,
        },  # fmt: skip
        "blind_threshold": 0.5,
    }


def write_sample(directory, name, n, seed, simulation=True):
    """Skim, weight friend and score friend with random columns."""
    rng = np.random.default_rng(seed)
    keys = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(n, dtype=np.uint64),
    }
    skim = {**keys, "is_os": rng.integers(0, 2, n).astype(np.int32), "mt_1": rng.uniform(0, 150, n)}
    friend = {**keys, "weight": rng.uniform(0.5, 1.5, n) if simulation else np.ones(n)}
    if simulation:
        friend["weight_pileup_up"] = friend["weight"] * rng.uniform(0.9, 1.1, n)
        friend["weight_pileup_down"] = friend["weight"] * rng.uniform(0.9, 1.1, n)
    score = rng.uniform(0.5, 1.0, n).astype(np.float32)
    scores = {**keys, "category": rng.integers(0, 2, n).astype(np.int32), "max_score": score}
    paths = tuple(str(directory / f"{name}.{kind}.root") for kind in ("skim", "friend", "scores"))
    for path, columns in zip(paths, (skim, friend, scores), strict=True):
        write_tree(path, columns)
    return paths, {**skim, **friend, **scores}


def reference(columns, category, edges, weight="weight", os=1):
    """The same histogram with plain numpy."""
    mask = (columns["is_os"] == os) & (columns["mt_1"] < 50) & (columns["category"] == category)
    values = columns["max_score"][mask]
    return np.histogram(values, edges, weights=columns[weight][mask])[0], np.histogram(
        values, edges, weights=columns[weight][mask] ** 2
    )[0]


def test_histograms_match_numpy(tmp_path, settings):
    nominal, columns = write_sample(tmp_path, "nominal", 3000, 1)
    shifted, shifted_columns = write_sample(tmp_path, "tau_es_up", 2900, 2)
    sample = {"type": "mc", "process": "H", "xsec": 1.0}
    result = fill_sample(sample, {"nominal": nominal, "tau_es_up": shifted}, settings, CLASSES,
                         EDGES, WEIGHTS)  # fmt: skip
    for name, cols, category, weight in (
        ("sig/H/nominal", columns, 0, "weight"),
        ("bkg/H/pileup_up", columns, 1, "weight_pileup_up"),
        ("sig/H/pileup_down", columns, 0, "weight_pileup_down"),
        ("sig/H/tau_es_up", shifted_columns, 0, "weight"),
    ):
        values, variances = reference(cols, category, EDGES[name.split("/")[0]], weight)
        np.testing.assert_allclose(result[name].values(), values, rtol=1e-12)
        np.testing.assert_allclose(result[name].variances(), variances, rtol=1e-12)
    ss_values, _ = reference(columns, 0, EDGES["sig"], os=0)
    np.testing.assert_allclose(result["ss_sig/H/nominal"].values(), ss_values, rtol=1e-12)
    cr = columns["mt_1"][(columns["is_os"] == 1) & (columns["mt_1"] >= 50)]
    assert (
        result["cr/H/nominal"].values().sum()
        == pytest.approx(
            columns["weight"][
                (columns["is_os"] == 1) & (columns["mt_1"] >= 50) & (columns["mt_1"] < 200)
            ].sum()
        )
        and len(cr) > 0
    )


def test_each_input_is_read_once(tmp_path, settings, monkeypatch):
    nominal, _ = write_sample(tmp_path, "nominal", 500, 3)
    shifted, _ = write_sample(tmp_path, "jet_es_up", 500, 4)
    calls = []
    original = histograms_module.read_with_friends
    monkeypatch.setattr(
        histograms_module, "read_with_friends",
        lambda *args, **kwargs: calls.append(args[0]) or original(*args, **kwargs),
    )  # fmt: skip
    sample = {"type": "mc", "process": "H", "xsec": 1.0}
    fill_sample(
        sample, {"nominal": nominal, "jet_es_up": shifted}, settings, CLASSES, EDGES, WEIGHTS
    )
    assert calls == [nominal[0], shifted[0]]


def test_merge_from_right_meets_both_criteria():
    edges = np.linspace(0, 1, 11)
    background = np.array([9.0, 0.2, 0.3, 4.0, 0.5, 0.5, 2.0, 0.1, 0.1, 0.05])
    sumw2 = background * 0.1
    kept = merge_from_right(edges, background, sumw2, 1.0, 0.3)
    totals = np.histogram(np.repeat((edges[:-1] + edges[1:]) / 2, 1), kept, weights=background)[0]
    assert kept[0] == 0.0 and kept[-1] == 1.0
    assert np.all(totals >= 1.0)
    # from the right: 0.05+0.1+0.1+2.0 closes [0.6, 1]; 0.5+0.5 has 32% uncertainty, so 4.0
    # joins: [0.3, 0.6]; 0.3+0.2 is too small, 9.0 joins: [0, 0.3]
    assert kept == pytest.approx([0.0, 0.3, 0.6, 1.0])
    # a remainder on the left that never qualifies joins its right neighbour
    three = np.linspace(0, 1, 4)
    assert merge_from_right(three, np.array([0.1, 5, 5]), np.zeros(3), 1.0, 0.3) == pytest.approx(
        [0.0, 2 / 3, 1.0]
    )


def test_signal_quantile_edges_have_equal_signal():
    values = np.random.default_rng(5).uniform(0.2, 1.0, 10000)
    edges = signal_quantile_edges(values, np.ones(10000), 4, 0.0, 1.0)
    counts = np.histogram(values, edges)[0]
    assert len(edges) == 5 and np.all(np.abs(counts - 2500) < 5)


def constant(value, variance, edges=(0.0, 0.5, 1.0)):
    import hist

    h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    h.view().value = np.asarray(value, float)
    h.view().variance = np.asarray(variance, float)
    return h


def test_blinding_mask():
    from analysis.stats.histograms import blinding_mask

    mask = blinding_mask([1.0, 3.0, 2.0, 0.0, 0.0], [10.0, 10.0, 0.0, 0.0, 5.0], 0.2)
    # S/B 0.1, 0.3, signal without background, empty bin, background only
    assert mask.tolist() == [False, True, True, False, False]


def qcd_case():
    """Per-sample histograms of two channels: data, a background, a signal and a QCD simulation."""
    return [
        {  # data: SS 100/10 per bin, OS anything
            "ss_sig/data/nominal": constant([100, 10], [100, 10]),
            "ss_bkg/data/nominal": constant([50, 50], [50, 50]),
            "sig/data/nominal": constant([90, 30], [90, 30]),
            "bkg/data/nominal": constant([80, 80], [80, 80]),
        },
        {  # simulated background, also in the SS region
            "ss_sig/Z/nominal": constant([30, 20], [4, 4]),
            "ss_bkg/Z/nominal": constant([10, 10], [1, 1]),
            "sig/Z/nominal": constant([60, 5], [6, 1]),
            "bkg/Z/nominal": constant([70, 70], [7, 7]),
        },
        {  # signal; a QCD simulation that the data-driven estimate replaces
            "sig/H/nominal": constant([1, 10], [0.1, 0.1]),
            "bkg/H/nominal": constant([1, 1], [0.1, 0.1]),
            "sig/QCD/nominal": constant([999, 999], [1, 1]),
        },
    ]


def test_qcd_from_same_sign_data_and_blinding(settings, caplog):
    settings = {**settings, "control_regions": None}
    with caplog.at_level(logging.WARNING):
        merged = merge(qcd_case(), settings, CLASSES, blind=True)
    final = merged.histograms
    qcd = final["sig/QCD/nominal"]
    np.testing.assert_allclose(qcd.values(), [(100 - 30) * 1.2, 0.0])  # 10 - 20 < 0: clipped
    np.testing.assert_allclose(qcd.variances()[0], (100 + 4) * 1.2**2)
    assert "negative in bins [1]" in caplog.text
    np.testing.assert_allclose(final["bkg/QCD/nominal"].values(), [48.0, 48.0])
    up = final["bkg/QCD/qcd_shape_up"].values()
    assert up == pytest.approx([48 * 0.9, 48 * 1.1])
    # signal/background in sig: 1/(60+84) and 10/5 -> only the second bin is blinded
    assert merged.blinded == {"sig": [False, True], "bkg": [False, False]}
    # blinded: no data histogram at all (a zeroed one would be fitted as data by other tools);
    # the yields tables keep the data of the unblinded bins only (the bug: counting bin 2's 30)
    assert not any("/data/" in name for name in final)
    assert merged.data_yields == {"sig": 90.0, "bkg": 160.0}
    markdown, latex = yields_tables(merged)
    assert "| data | 90 (1 of 2 bins blinded) |" in markdown and "Data & 160" in latex
    assert not any(name.startswith("ss_") for name in final)


def test_unblinded_merge_keeps_the_data_whole(settings):
    """unblind: the data histograms are written as filled (the bug: blinding regardless)."""
    merged = merge(qcd_case(), {**settings, "control_regions": None}, CLASSES, blind=False)
    assert merged.histograms["sig/data/nominal"].values().tolist() == [90.0, 30.0]
    assert merged.blinded == {"sig": [False, False], "bkg": [False, False]}
    assert merged.data_yields == {"sig": 120.0, "bkg": 160.0}
    assert "| data | 120 |" in yields_tables(merged)[0]


def test_root_file_round_trip(tmp_path):
    histograms = {"sig/H/nominal": constant([1.5, 2.5], [0.25, 0.5])}
    write_histograms(tmp_path / "h.root", histograms)
    back = read_histograms(tmp_path / "h.root")
    assert back["sig/H/nominal"].values().tolist() == [1.5, 2.5]
    assert back["sig/H/nominal"].variances().tolist() == [0.25, 0.5]


def test_bad_inputs_give_one_clear_error(tmp_path, settings):
    paths, columns = write_sample(tmp_path, "nominal", 100, 6)
    friend = {k: columns[k] for k in ("run", "luminosityBlock", "event")}
    friend["weight"] = np.where(np.arange(100) == 7, np.nan, 1.0)
    write_tree(paths[1], friend)
    sample = {
        "type": "mc",
        "process": "H",
        "xsec": 1.0,
        "alternative": {"of": "X", "systematic": "s"},
    }
    with pytest.raises(AnalysisError, match="1 events with a non-finite 'weight'"):
        fill_sample(sample, {"nominal": paths}, settings, CLASSES, EDGES, WEIGHTS)
    with pytest.raises(AnalysisError, match="file not found"):
        missing = (str(tmp_path / "missing.root"), *paths[1:])
        fill_sample(sample, {"nominal": missing}, settings, CLASSES, EDGES, WEIGHTS)
    with pytest.raises(AnalysisError, match="process 'Z': zero yield in every channel"):
        check_processes({"sig/Z/nominal": constant([0, 0], [0, 0])})


def era_case():
    """Per-sample histograms of one channel in two eras: data, a background varied by a
    correlated (``es``) and a decorrelated (``tes``) systematic, its alternative sample."""
    samples, eras = [], []
    for era, scale in (("a", 1.0), ("b", 2.0)):
        samples += [
            {"ss_sig/data/nominal": constant([50, 20], [50, 20]),
             "sig/data/nominal": constant([40, 30], [40, 30])},
            {"ss_sig/Z/nominal": constant([10, 5], [1, 1]),
             "sig/Z/nominal": constant([20 * scale, 10 * scale], [2, 1]),
             "sig/Z/es_up": constant([22 * scale, 11 * scale], [2, 1]),
             "sig/Z/tes_up": constant([21 * scale, 9 * scale], [2, 1])},
            {"sig/Z/tune_up": constant([19 * scale, 12 * scale], [2, 1])},
            {"sig/H/nominal": constant([1, 5], [0.1, 0.1])},
        ]  # fmt: skip
        eras += [era] * 4
    return samples, eras


def era_settings(settings, channels):
    return {
        **settings,
        "control_regions": None,
        "eras": {"names": ["a", "b"], "channels": channels, "decorrelated": ["tes", "qcd_shape"],
                 "lumi_uncertainty": {"a": {"lumi_a": 0.02}, "b": {"lumi_b": 0.05}}},
    }  # fmt: skip


def test_per_era_channels_keep_the_eras_apart(settings):
    samples, eras = era_case()
    merged = merge(samples, era_settings(settings, "per_era"), ["sig"], blind=False,
                   sample_eras=eras)  # fmt: skip
    final = merged.histograms
    assert {name.split("/")[0] for name in final} == {"sig_a", "sig_b"}
    assert final["sig_b/Z/nominal"].values().tolist() == [40.0, 20.0]
    assert final["sig_a/Z/es_up"].values().tolist() == [22.0, 11.0]
    assert final["sig_b/Z/tes_b_up"].values().tolist() == [42.0, 18.0]
    assert "sig_b/Z/tes_up" not in final and "sig_a/Z/tes_b_up" not in final
    assert final["sig_a/Z/tune_up"].values().tolist() == [19.0, 12.0]
    np.testing.assert_allclose(final["sig_b/Z/lumi_b_up"].values(), [42.0, 21.0])
    np.testing.assert_allclose(final["sig_a/H/lumi_a_down"].values(), [0.98, 4.9])
    assert "sig_a/data/lumi_a_up" not in final and "sig_a/Z/lumi_b_up" not in final
    # the QCD estimate per era, from the era's same-sign data; its shape decorrelated
    np.testing.assert_allclose(final["sig_a/QCD/nominal"].values(), [(50 - 10) * 1.2, 18.0])
    assert {"sig_a/QCD/qcd_shape_a_up", "sig_b/QCD/qcd_shape_b_down"} <= set(final)
    assert merged.blinded == {"sig_a": [False, False], "sig_b": [False, False]}


def test_merged_channels_sum_the_eras(settings):
    samples, eras = era_case()
    merged = merge(samples, era_settings(settings, "merged"), ["sig"], blind=False,
                   sample_eras=eras)  # fmt: skip
    final = merged.histograms
    assert {name.split("/")[0] for name in final} == {"sig"}
    assert final["sig/Z/nominal"].values().tolist() == [60.0, 30.0]
    assert final["sig/Z/es_up"].values().tolist() == [66.0, 33.0]  # correlated: both eras
    assert final["sig/Z/tune_up"].values().tolist() == [57.0, 36.0]
    # decorrelated: the era's variation plus the other era at its nominal
    assert final["sig/Z/tes_a_up"].values().tolist() == [21.0 + 40.0, 9.0 + 20.0]
    assert final["sig/Z/tes_b_up"].values().tolist() == [20.0 + 42.0, 10.0 + 18.0]
    np.testing.assert_allclose(final["sig/Z/lumi_b_up"].values(), [20 + 40 * 1.05, 10 + 20 * 1.05])
    np.testing.assert_allclose(final["sig/H/lumi_a_up"].values(), [1.02 + 1, 5.1 + 5])
    qcd = [(100 - 20) * 1.2, (40 - 10) * 1.2]  # the eras' same-sign data and simulation summed
    np.testing.assert_allclose(final["sig/QCD/nominal"].values(), qcd)
    assert final["sig/data/nominal"].values().tolist() == [80.0, 60.0]


@pytest.mark.parametrize("channels", ["per_era", "merged"])
def test_a_variation_some_eras_lack(settings, channels):
    """Era b names no ``es`` (eras with different JES sources) and has no alternative sample:
    per era, b's channel has neither; merged, era a's variation is summed with era b at its
    nominal (catches b's share dropped from the variation, or the variation refused)."""
    samples, eras = era_case()
    samples = [
        {name: h for name, h in sample.items() if not name.endswith(("/es_up", "/tune_up"))}
        if era == "b" else sample
        for sample, era in zip(samples, eras, strict=True)
    ]  # fmt: skip
    final = merge(samples, era_settings(settings, channels), ["sig"], blind=False,
                  sample_eras=eras).histograms  # fmt: skip
    if channels == "per_era":
        assert final["sig_a/Z/es_up"].values().tolist() == [22.0, 11.0]
        assert final["sig_a/Z/tune_up"].values().tolist() == [19.0, 12.0]
        assert not {"sig_b/Z/es_up", "sig_b/Z/tune_up"} & set(final)
    else:
        assert final["sig/Z/es_up"].values().tolist() == [22.0 + 40.0, 11.0 + 20.0]
        assert final["sig/Z/tune_up"].values().tolist() == [19.0 + 40.0, 12.0 + 20.0]
        assert final["sig/Z/nominal"].values().tolist() == [60.0, 30.0]


def test_several_eras_need_every_sample_era(settings):
    samples, eras = era_case()
    with pytest.raises(ValueError, match="era of every sample"):
        merge(samples, era_settings(settings, "merged"), ["sig"], blind=False,
              sample_eras=eras[:-1])  # fmt: skip


@pytest.mark.parametrize("channels", ["per_era", "merged"])
def test_a_luminosity_component_shared_by_the_eras(settings, channels):
    """Components of the eras' luminosity uncertainties: one named in both eras varies each era
    by its own size (per era: in each era's channel; merged: both shares), one of era a alone
    varies era a's share, era b's staying at its nominal."""
    samples, eras = era_case()
    config = era_settings(settings, channels)
    config["eras"]["lumi_uncertainty"] = {
        "a": {"lumi_a": 0.02, "lumi_shared": 0.01},
        "b": {"lumi_shared": 0.03},
    }
    final = merge(samples, config, ["sig"], blind=False, sample_eras=eras).histograms
    if channels == "per_era":
        np.testing.assert_allclose(final["sig_a/Z/lumi_shared_up"].values(), [20.2, 10.1])
        np.testing.assert_allclose(final["sig_b/Z/lumi_shared_down"].values(), [38.8, 19.4])
        assert "sig_b/Z/lumi_a_up" not in final
    else:
        np.testing.assert_allclose(final["sig/Z/lumi_shared_up"].values(),
                                   [20 * 1.01 + 40 * 1.03, 10 * 1.01 + 20 * 1.03])  # fmt: skip
        np.testing.assert_allclose(
            final["sig/Z/lumi_a_down"].values(), [20 * 0.98 + 40, 10 * 0.98 + 20]
        )
