"""Friend trees: normalisation to cross section x luminosity, weight variations, the tau_h ID
scale factor, fold index, and alignment checks."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from analysis.core.errors import AnalysisError
from analysis.core.io import read_tree, read_with_friends, write_tree
from analysis.selection import friends
from analysis.selection.corrections import evaluate_tau_id_sf, load_correction
from analysis.selection.friends import make_friend
from tests.conftest import REPO


def _settings(config, tau_id_sf=True):
    weights = {**config["weights"]}
    weights["tau_id_sf"] = (
        {**weights["tau_id_sf"], "file": str(REPO / weights["tau_id_sf"]["file"])}
        if tau_id_sf
        else None
    )
    return {"lumi": config["lumi"], "weights": weights, "folds": config["friends"]["folds"]}


def _raw(path, branches):
    return uproot.open(path)["Events"].arrays(["event", *branches], library="np")


@pytest.fixture(scope="module")
def friend(tmp_path_factory, ztt_skims, default_config, default_samples):
    output = tmp_path_factory.mktemp("friends") / "nominal.root"
    make_friend(
        ztt_skims / "nominal.root",
        ztt_skims / "nominal.cutflow.json",
        output,
        "ZTT",
        default_samples["ZTT"],
        _settings(default_config),
    )
    return read_tree(output)


def test_weights_sum_to_cross_section_times_luminosity(
    tmp_path, ztt_skims, toy_files, default_config, default_samples
):
    """Without per-event factors, weights sum to xsec * lumi * selected / all generator weights."""
    settings = _settings(default_config, tau_id_sf=False)
    settings["weights"]["variations"] = {}
    columns = make_friend(
        ztt_skims / "nominal.root",
        ztt_skims / "nominal.cutflow.json",
        tmp_path / "f.root",
        "ZTT",
        default_samples["ZTT"],
        settings,
    )
    raw = _raw(toy_files["ZTT"], ["genWeight"])
    selected = np.isin(raw["event"], columns["event"])
    expected = (
        default_samples["ZTT"]["xsec"]
        * default_config["lumi"]
        * raw["genWeight"][selected].sum()
        / raw["genWeight"].sum()
    )
    assert columns["weight"].sum() == pytest.approx(expected, rel=1e-5)
    assert (columns["weight"] < 0).any(), "negative generator weights survive into the event weight"


def test_nominal_weight_includes_pileup_and_tau_id_scale_factor(
    friend, ztt_skims, toy_files, default_config, default_samples
):
    skim = read_tree(ztt_skims / "nominal.root")
    raw = _raw(toy_files["ZTT"], ["genWeight", "puWeight"])
    index = {e: i for i, e in enumerate(raw["event"].tolist())}
    rows = np.array([index[e] for e in skim["event"].tolist()])
    correction = load_correction(REPO / default_config["weights"]["tau_id_sf"]["file"], "tau_id_sf")
    sf = np.where(
        skim["gen_match_2"] == 5,
        evaluate_tau_id_sf(correction, skim["pt_2"], skim["dm_2"], "nom"),
        1.0,
    )
    sumw = raw["genWeight"].sum()
    expected = (
        default_samples["ZTT"]["xsec"]
        * default_config["lumi"]
        / sumw
        * raw["genWeight"][rows]
        * raw["puWeight"][rows]
        * sf
    )
    np.testing.assert_allclose(friend["weight"], expected, rtol=1e-5)
    assert (sf != 1).any() and (skim["gen_match_2"] == 5).any()


def test_weight_variations(friend, ztt_skims, toy_files):
    skim = read_tree(ztt_skims / "nominal.root")
    raw = uproot.open(toy_files["ZTT"])["Events"].arrays(
        ["event", "genWeight", "puWeight", "puWeightUp", "LHEScaleWeight"], library="ak"
    )
    index = {e: i for i, e in enumerate(raw["event"].to_list())}
    rows = np.array([index[e] for e in skim["event"].tolist()])
    pu_up = raw["puWeightUp"].to_numpy()[rows] / raw["puWeight"].to_numpy()[rows]
    np.testing.assert_allclose(friend["weight_pileup_up"], friend["weight"] * pu_up, rtol=1e-5)
    # muR up: LHEScaleWeight[7], renormalised to keep the inclusive cross section (acceptance only)
    gen = raw["genWeight"].to_numpy()
    scale = raw["LHEScaleWeight"][:, 7].to_numpy()
    renorm = gen.sum() / (gen * scale).sum()
    np.testing.assert_allclose(
        friend["weight_scale_muR_up"], friend["weight"] * scale[rows] * renorm, rtol=1e-5
    )
    for name in ("pileup", "scale_muR", "scale_muF", "ps_isr", "ps_fsr", "tau_id"):
        assert not np.allclose(friend[f"weight_{name}_up"], friend[f"weight_{name}_down"]), name
    genuine = skim["gen_match_2"] == 5
    np.testing.assert_array_equal(friend["weight_tau_id_up"][~genuine], friend["weight"][~genuine])
    ratio = friend["weight_tau_id_up"][genuine] / friend["weight"][genuine]
    assert np.all(ratio > 1.0)


def test_fold_and_keys(friend, ztt_skims, default_config):
    skim = read_tree(ztt_skims / "nominal.root")
    np.testing.assert_array_equal(friend["event"], skim["event"])
    np.testing.assert_array_equal(
        friend["fold"], skim["event"] % default_config["friends"]["folds"]
    )
    counts = np.bincount(friend["fold"])
    assert len(counts) == 2 and abs(counts[0] - counts[1]) < 0.2 * counts.sum()


def test_data_gets_unit_weights(tmp_path, ztt_skims, default_config):
    columns = make_friend(
        ztt_skims / "nominal.root",
        ztt_skims / "nominal.cutflow.json",
        tmp_path / "f.root",
        "data",
        {"type": "data"},
        _settings(default_config),
    )
    np.testing.assert_array_equal(columns["weight"], 1.0)
    assert not any(name.startswith("weight_") for name in columns)


def test_reader_checks_alignment(tmp_path, ztt_skims, friend):
    skim_path = ztt_skims / "nominal.root"
    good = tmp_path / "good.root"
    write_tree(good, friend)
    merged = read_with_friends(skim_path, [good], ["pt_1", "weight"])
    assert len(merged["weight"]) == len(merged["pt_1"])
    shuffled = {name: values.copy() for name, values in friend.items()}
    shuffled["event"][[0, 1]] = shuffled["event"][[1, 0]]
    bad = tmp_path / "bad.root"
    write_tree(bad, shuffled)
    with pytest.raises(AnalysisError, match="event differs from its skim at entry 0"):
        read_with_friends(skim_path, [bad])
    short = tmp_path / "short.root"
    write_tree(short, {name: values[:-1] for name, values in friend.items()})
    with pytest.raises(AnalysisError, match="entries but its skim has"):
        read_with_friends(skim_path, [short])


def test_non_finite_weight_is_a_clear_error(tmp_path, ztt_skims, default_config, default_samples):
    skim = read_tree(ztt_skims / "nominal.root")
    skim["w_pileup_up"][3] = np.nan
    broken = tmp_path / "skim.root"
    write_tree(broken, skim)
    with pytest.raises(AnalysisError, match="non-finite weight_pileup_up"):
        make_friend(
            broken,
            ztt_skims / "nominal.cutflow.json",
            tmp_path / "f.root",
            "ZTT",
            default_samples["ZTT"],
            _settings(default_config),
        )
    assert not (tmp_path / "f.root").exists()


def test_friends_refuse_a_skim_paired_with_another_variation(tmp_path, capsys):
    """One job writes every variation's friend: a skim paired with the output of another
    variation (or a missing output) must stop with one line before anything is written, not
    give a variation the weights of another."""
    arguments = ["--sample", "ZTT", "--sample-spec", "{}", "--cutflow", "cutflow.json",
                 "--settings", "{}", "--skims", "a/nominal.root", "a/tau_es_up.root"]  # fmt: skip
    outputs = [str(tmp_path / "tau_es_up.root"), str(tmp_path / "nominal.root")]
    assert friends.main([*arguments, "--outputs", *outputs]) == 1
    assert friends.main([*arguments, "--outputs", outputs[1]]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 2 and "paired with output" in errors[0]
    assert not list(tmp_path.iterdir())


def test_btag_uncertainty_sources_vary_the_one_btag_weight(default_config):
    """With the b-tagging weight's uncertainty split into sources, the nominal weight holds
    ``w_btag`` once and each source's variation replaces it by its own column: catches a
    source's column multiplied into the nominal, or divided by a column that does not exist."""
    weights = {**default_config["weights"], "variations": {}, "tau_id_sf": None,
               "corrections": {"btag": {"sources": ["jes", "statistic"]}}}  # fmt: skip
    n = 4
    skim = {"run": np.ones(n, dtype=np.uint32), "luminosityBlock": np.ones(n, dtype=np.uint32),
            "event": np.arange(n, dtype=np.uint64), "w_gen": np.ones(n),
            "w_btag": np.array([0.9, 1.0, 1.1, 1.2])}  # fmt: skip
    for variation, scale in (("jes", 1.1), ("statistic", 0.95), ("light", 1.02)):
        skim[f"w_btag_{variation}_up"] = skim["w_btag"] * scale
        skim[f"w_btag_{variation}_down"] = skim["w_btag"] / scale
    cutflow = {"sumw": {"genEventSumw": float(n), "processed": {"genWeight": float(n)}}}
    sample = {"type": "mc", "xsec": 2.0, "process": "TT"}
    columns = friends.friend_columns(skim, cutflow, "TT", sample,
                                     {"lumi": 1.0, "weights": weights, "folds": 2})  # fmt: skip
    per_event = 2.0 / n  # xsec x lumi / sum of generator weights
    np.testing.assert_allclose(columns["weight"], per_event * skim["w_btag"])
    np.testing.assert_allclose(columns["weight_btag_jes_up"], per_event * skim["w_btag"] * 1.1)
    np.testing.assert_allclose(columns["weight_btag_light_down"], per_event * skim["w_btag"] / 1.02)
    assert "weight_btag_up" not in columns
