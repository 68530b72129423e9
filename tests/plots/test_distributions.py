"""Cutflow and input-feature figures: tables, filling, blinding, QCD estimated as in the fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis.core.errors import AnalysisError
from analysis.plots import distributions as plot_distributions
from analysis.plots.stackplot import data_interval
from tests.plots.inputs import QCD, SETTINGS, STYLE, png_ok, write_cutflows, write_feature_inputs

COLUMNS = ["m_vis", "njets", "is_os"]


def test_cutflow_tables(tmp_path):
    cutflows = plot_distributions.read_cutflows(write_cutflows(tmp_path))
    markdown, latex = plot_distributions.cutflow_tables(cutflows)
    assert "| tau_pair | 10 (10.00%) | 40 (4.00%) |" in markdown
    assert r"tau\_pair & 10 (10.00\%) & 40 (4.00\%) \\" in latex
    written = plot_distributions.plot_cutflow(cutflows, tmp_path / "cutflow", STYLE)
    png_ok(written[0])


def record_stacks(monkeypatch) -> dict:
    """Make plot_features record what it hands to plot_stack, by figure name."""
    drawn = {}
    draw = plot_distributions.plot_stack

    def record(edges, stack, data, xlabel, prefix, style, **options):
        drawn[Path(prefix).name] = (edges, dict(stack), data, xlabel, options)
        return draw(edges, stack, data, xlabel, prefix, style, **options)

    monkeypatch.setattr(plot_distributions, "plot_stack", record)
    return drawn


def test_feature_figures_fill_like_numpy(tmp_path, monkeypatch):
    """Stacked counts per region equal a plain numpy histogram of the same selection; blinding
    hides data where the simulated S/B exceeds the threshold; axes carry the feature labels."""
    events = plot_distributions.load_events(*write_feature_inputs(tmp_path), COLUMNS)
    os_mask = events["ZTT"]["is_os"] == 1
    edges = plot_distributions.feature_edges(events["ZTT"]["njets"][os_mask], 10)
    np.testing.assert_array_equal(edges, [-0.5, 0.5, 1.5, 2.5, 3.5])
    counts, _ = plot_distributions._fill(
        events["ZTT"]["njets"][os_mask], events["ZTT"]["weight"][os_mask], edges
    )
    expected = [
        events["ZTT"]["weight"][os_mask & (events["ZTT"]["njets"] == k)].sum() for k in range(4)
    ]
    np.testing.assert_allclose(counts, expected)
    drawn = record_stacks(monkeypatch)
    written = plot_distributions.plot_features(
        events, ["m_vis", "njets"], SETTINGS["regions"], 10, tmp_path / "features", STYLE
    )
    assert sorted(p.name for p in written if p.suffix == ".png") == [
        "os_m_vis.png", "os_njets.png", "ss_m_vis.png", "ss_njets.png"
    ]  # fmt: skip
    # the axis title is the configured label, not the column name
    assert drawn["os_m_vis"][3] == SETTINGS["labels"]["features"]["m_vis"]
    with pytest.raises(AnalysisError, match="plots.regions.bad: column 'nope'"):
        plot_distributions.plot_features(
            events, ["m_vis"], {"bad": {"nope": 1}}, 10, tmp_path / "f", STYLE
        )

    # blinded (TT as the signal): data hidden exactly where TT/ZTT > 1 in the simulation
    written = plot_distributions.plot_features(
        events, ["m_vis"], {"os": {"is_os": 1}}, 10, tmp_path / "blinded", STYLE,
        {"signals": ["TT"], "threshold": 1.0},
    )  # fmt: skip
    edges, _, data, _, options = drawn["os_m_vis"]
    tt, ztt = (
        np.histogram(
            np.clip(events[p]["m_vis"], edges[0], np.nextafter(edges[-1], -np.inf)), edges,
            weights=events[p]["weight"] * (events[p]["is_os"] == 1),
        )[0]
        for p in ("TT", "ZTT")
    )  # fmt: skip
    np.testing.assert_array_equal(options["blinded"], tt > ztt)
    assert 0 < options["blinded"].sum() < len(options["blinded"])
    assert np.isfinite(data).all(), "data are passed whole; plot_stack hides the blinded bins"
    png_ok(next(p for p in written if p.suffix == ".png"))


def numpy_counts(events, process, cut, edges):
    """Weighted counts (data: unweighted) and squared weights of m_vis with ``is_os == cut``."""
    mask = events[process]["is_os"] == cut
    weights = np.ones(mask.sum()) if process == "data" else events[process]["weight"][mask]
    clipped = np.clip(events[process]["m_vis"][mask], edges[0], np.nextafter(edges[-1], -np.inf))
    return np.histogram(clipped, edges, weights=weights)[0], np.histogram(
        clipped, edges, weights=weights**2
    )[0]


def test_qcd_from_same_sign_data_without_qcd_simulation(tmp_path, monkeypatch):
    """With no QCD sample, the opposite-sign figure still stacks QCD: (same-sign data - same-sign
    simulation) x os_ss_factor, negative bins at zero, its uncertainty (statistical, normalisation,
    shape) in the band. Recomputed here with numpy, so a plot that drops QCD, forgets to subtract
    the simulation, skips the factor or loses the systematic terms fails."""
    events = plot_distributions.load_events(*write_feature_inputs(tmp_path), COLUMNS)
    drawn = record_stacks(monkeypatch)
    plot_distributions.plot_features(
        events, ["m_vis"], SETTINGS["regions"], 10, tmp_path / "out", STYLE, qcd=QCD
    )
    edges, stack, _, _, options = drawn["os_m_vis"]
    assert sorted(stack) == ["QCD", "TT", "ZTT"] and options["band_label"] == "Stat. + QCD unc."
    data, _ = numpy_counts(events, "data", 0, edges)
    simulated = [numpy_counts(events, p, 0, edges) for p in ("ZTT", "TT")]
    factor = QCD["os_ss_factor"]
    expected = np.maximum(factor * (data - sum(c for c, _ in simulated)), 0.0)
    np.testing.assert_allclose(stack["QCD"][0], expected)
    assert expected.sum() > 0, "the toy must leave QCD in some bins for this test to mean much"
    tilt = np.abs(np.linspace(-1, 1, len(expected))) * QCD["shape_tilt"] * expected
    variance = factor**2 * (data + sum(w2 for _, w2 in simulated))
    variance = variance + (QCD["norm_uncertainty"] * expected) ** 2 + tilt**2
    np.testing.assert_allclose(stack["QCD"][1], variance)
    # same-sign region: transfer factor 1, so QCD fills data minus simulation
    edges, stack, _, _, _ = drawn["ss_m_vis"]
    data, _ = numpy_counts(events, "data", 0, edges)
    simulated = sum(numpy_counts(events, p, 0, edges)[0] for p in ("ZTT", "TT"))
    np.testing.assert_allclose(stack["QCD"][0], np.maximum(data - simulated, 0.0))


def test_qcd_simulation_is_replaced_and_needs_data(tmp_path, monkeypatch):
    """A simulated QCD sample is not drawn when QCD comes from data (the fit does not use it);
    without data the estimate cannot be made and the error says what to do; with
    from_data false the simulation is stacked as before."""
    samples = (("Z", "ZTT", 300), ("Q", "QCD", 300), ("data", "data", 400))
    events = plot_distributions.load_events(*write_feature_inputs(tmp_path, samples), COLUMNS)
    drawn = record_stacks(monkeypatch)
    regions = {"os": {"is_os": 1}}
    plot_distributions.plot_features(events, ["m_vis"], regions, 5, tmp_path / "a", STYLE, qcd=QCD)
    edges, stack, *_ = drawn["os_m_vis"]
    data, _ = numpy_counts(events, "data", 0, edges)
    ztt, _ = numpy_counts(events, "ZTT", 0, edges)
    expected = np.maximum(QCD["os_ss_factor"] * (data - ztt), 0.0)
    np.testing.assert_allclose(stack["QCD"][0], expected)  # not the QCD simulation
    simulation = {**QCD, "from_data": False}
    plot_distributions.plot_features(
        events, ["m_vis"], regions, 5, tmp_path / "b", STYLE, qcd=simulation
    )
    qcd_mc, _ = numpy_counts(events, "QCD", 1, drawn["os_m_vis"][0])
    np.testing.assert_allclose(drawn["os_m_vis"][1]["QCD"][0], qcd_mc)
    no_data = {p: c for p, c in events.items() if p != "data"}
    with pytest.raises(AnalysisError, match="histograms.qcd.from_data: false"):
        plot_distributions.plot_features(no_data, ["m_vis"], regions, 5, tmp_path, STYLE, qcd=QCD)
    with pytest.raises(AnalysisError, match="plots.regions.both: is_os must be 0, 1"):
        plot_distributions.plot_features(
            events, ["m_vis"], {"both": {"is_os": [0, 2]}}, 5, tmp_path, STYLE, qcd=QCD
        )


def test_data_errors_are_garwood_intervals():
    """Data error bars are the 68% Garwood interval, chi2 quantiles (here from scipy) of 2n and
    2(n + 1) degrees of freedom, not sqrt(N); an empty bin has an upper error; hidden (NaN)
    bins stay hidden."""
    low, high = data_interval(np.array([0.0, 4.0, 25.0, np.nan]))
    counts = np.array([0.0, 4.0, 25.0])
    tail = stats.norm.sf(1.0)
    expected_low = np.nan_to_num(stats.chi2.ppf(tail, 2 * counts) / 2)  # 0 for an empty bin
    np.testing.assert_allclose(low[:3], expected_low, atol=1e-9)
    np.testing.assert_allclose(high[:3], stats.chi2.ppf(1 - tail, 2 * (counts + 1)) / 2)
    assert high[0] == pytest.approx(1.841, abs=1e-3)
    assert high[1] - 4.0 == pytest.approx(3.163, abs=1e-3), "asymmetric, not sqrt(4) = 2"
    assert np.isnan(low[3]) and np.isnan(high[3])
