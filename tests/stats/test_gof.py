"""Saturated goodness-of-fit tests with toys (analysis/stats/gof.py, input_gof.py,
gof_histograms.py): the statistic by hand, the toys' p-values, seeding, chunks and binning."""

from __future__ import annotations

import logging

import numpy as np
import pyhf
import pytest
import scipy.stats

from analysis.core.errors import AnalysisError
from analysis.stats import gof, gof_histograms, input_gof
from analysis.stats.chunks import chunk_count
from analysis.stats.minimizer import FitSettings
from analysis.stats.results import GofChunk, GofResults, GofTest

SETTINGS = FitSettings()

logging.getLogger("pyhf").setLevel(logging.WARNING)


def two_bins(scale: float = 1.0) -> pyhf.pdf.Model:
    """Signal on a background with a Poisson-constrained (shapesys) uncertainty per bin."""
    return pyhf.simplemodels.uncorrelated_background(
        signal=[5.0 * scale, 10.0 * scale],
        bkg=[50.0 * scale, 60.0 * scale],
        bkg_uncertainty=[5.0 * scale, 6.0 * scale],
    )


def pseudo_data(model: pyhf.pdf.Model, rng: np.random.Generator) -> np.ndarray:
    """Data drawn from the model at its nominal parameters, independently of gof.sample_toys:
    Poisson main data and Poisson auxiliary data of the shapesys (its only constraint)."""
    pars = np.asarray(model.config.suggested_init(), dtype=float)
    main = rng.poisson(np.asarray(model.expected_actualdata(pars)))
    aux = rng.poisson(np.asarray(model.config.auxdata, dtype=float))
    return np.r_[main, aux].astype(float)


def test_saturated_statistic_by_hand():
    """chi2 = 2 sum[nu - n + n log(n / nu)] over the bins plus the same Poisson form for the
    auxiliary data, at the best fit (pyhf's): catches a missing constraint term, a saturated
    model with the wrong rate, a sign, or a factor 2; ndof = bins - free parameters (mu)."""
    model = two_bins()
    data = np.r_[[70.0, 58.0], model.config.auxdata]
    sampled = gof.saturated_test(model, data, SETTINGS, 0, 1)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    best = np.asarray(pyhf.infer.mle.fit(data, model), dtype=float)
    nu = np.asarray(model.expected_actualdata(best))
    n = data[:2]
    tau = np.asarray(model.config.auxdata, dtype=float)
    gamma = best[model.config.par_slice("uncorr_bkguncrt")]
    main = 2 * np.sum(nu - n + n * np.log(n / nu))
    aux = 2 * np.sum(gamma * tau - tau + tau * np.log(tau / (gamma * tau)))
    assert sampled.ndof == 1
    assert sampled.chi2 == pytest.approx(main + aux, abs=1e-3)
    assert sampled.p_value_asymptotic == pytest.approx(scipy.stats.chi2.sf(main + aux, 1), 1e-2)


def test_toys_randomise_the_auxiliary_data_around_the_parameters():
    """The toys' auxiliary data scatter as the constraint says around the given parameters, the
    main data as Poisson around their expectation: catches auxiliary data left at the nominal
    values (nuisances not randomised) or toys drawn at the wrong point."""
    model = two_bins()
    pars = np.array([2.0, 1.1, 0.9])  # mu, gamma_1, gamma_2
    toys = gof.sample_toys(model, pars, 20000, np.random.default_rng(3))
    tau = np.asarray(model.config.auxdata, dtype=float)
    expected = np.asarray(model.expected_actualdata(pars))
    assert toys[:, :2].mean(axis=0) == pytest.approx(expected, rel=0.01)
    assert toys[:, 2:].mean(axis=0) == pytest.approx(tau * pars[1:], rel=0.01)
    assert toys[:, 2:].var(axis=0) == pytest.approx(tau * pars[1:], rel=0.05)


def test_toy_p_values_are_uniform_and_match_the_asymptotic_ones():
    """On pseudo-data drawn from the model itself, the toy p-values of several data sets (each
    with its own seed) are uniform (KS, loose threshold), and with large counts (asymptotic
    regime) close to the chi2 p-values: catches a statistic compared the wrong way round, toys
    generated from the wrong point, or toys refitted differently from the data."""
    model = two_bins(scale=10.0)
    rng = np.random.default_rng(11)
    toy_p, asymptotic_p = [], []
    for seed in range(24):
        sampled = gof.saturated_test(model, pseudo_data(model, rng), SETTINGS, 40, seed)
        toy_p.append(sampled.p_value)
        asymptotic_p.append(sampled.p_value_asymptotic)
        assert sampled.fallbacks == 0
    assert scipy.stats.kstest(toy_p, "uniform").pvalue > 1e-3
    assert np.mean(np.abs(np.subtract(toy_p, asymptotic_p))) < 0.1


def test_same_seed_same_toys():
    """A test's toys follow from its seed alone: same seed, identical statistics; another seed,
    others. Catches a global random state or a seed not passed on."""
    model = two_bins()
    data = np.r_[[60.0, 75.0], model.config.auxdata]
    first = gof.saturated_test(model, data, SETTINGS, 15, 7)
    again = gof.saturated_test(model, data, SETTINGS, 15, 7)
    other = gof.saturated_test(model, data, SETTINGS, 15, 8)
    assert np.array_equal(first.toy_chi2, again.toy_chi2)
    assert not np.array_equal(first.toy_chi2, other.toy_chi2)
    assert gof.seed_of(1, ("a", "b")) == gof.seed_of(1, ("a", "b"))
    assert gof.seed_of(1, ("a", "b")) != gof.seed_of(1, ("a", "c"))


def test_minuit_refits_of_toys_agree_with_newton_steps():
    """Toys refitted by MINUIT (batched refits off) give the statistics of the Newton steps:
    catches a Newton minimum that is not the minimum, or a fallback that fits other data."""
    model = two_bins()
    data = np.r_[[62.0, 66.0], model.config.auxdata]
    newton = gof.saturated_test(model, data, SETTINGS, 10, 5)
    minuit = gof.saturated_test(model, data, SETTINGS._replace(batched_refits=False), 10, 5)
    assert minuit.fallbacks == 10 and newton.fallbacks == 0
    assert newton.toy_chi2 == pytest.approx(minuit.toy_chi2, abs=1e-3)


def modifier_model() -> pyhf.pdf.Model:
    """Three bins, a signal and two backgrounds with every modifier type the workspace builder
    writes (normfactor, lumi, normsys, histosys, staterror) and a shapesys, with the analysis's
    interpolation codes."""

    def sample(name, data, modifiers):
        return {"name": name, "data": data, "modifiers": modifiers}

    lumi = {"name": "lumi", "type": "lumi", "data": None}
    channel = {"name": "c", "samples": [
        sample("sig", [4.0, 9.0, 6.0], [
            {"name": "mu", "type": "normfactor", "data": None}, lumi,
            {"name": "xs_sig", "type": "normsys", "data": {"hi": 1.08, "lo": 0.93}}]),
        sample("bkg1", [60.0, 45.0, 20.0], [
            lumi, {"name": "xs_bkg", "type": "normsys", "data": {"hi": 1.05, "lo": 0.96}},
            {"name": "es", "type": "histosys",
             "data": {"hi_data": [63.0, 44.0, 18.5], "lo_data": [57.5, 46.5, 21.0]}},
            {"name": "es", "type": "normsys", "data": {"hi": 1.02, "lo": 0.985}},
            {"name": "staterror_c", "type": "staterror", "data": [3.0, 2.5, 2.0]}]),
        sample("bkg2", [15.0, 20.0, 25.0], [
            {"name": "shape_bkg2", "type": "shapesys", "data": [2.0, 3.0, 2.5]},
            {"name": "staterror_c", "type": "staterror", "data": [1.5, 1.5, 2.0]}]),
    ]}  # fmt: skip
    spec = {
        "channels": [channel],
        "parameters": [{"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]],
                        "inits": [1.0]}],
    }  # fmt: skip
    codes = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
    return pyhf.Model(spec, poi_name="mu", modifier_settings=codes)


def test_batched_toy_fits_equal_tight_minuit_fits_of_each_toy():
    """All toys fitted together by Newton steps give each toy's minimum and best fit as pyhf with
    MINUIT (tolerance 1e-8, one toy at a time, from the same start), and the same numbers bit for
    bit when fitted one at a time: catches a toy fitted on another toy's data (rows of data and
    points misaligned once converged toys leave the batch), auxiliary data or constants shared
    between toys, or a batch-dependent result."""
    model = modifier_model()
    data = np.r_[[85.0, 70.0, 48.0], model.config.auxdata]
    best = gof.minimize(model, data, SETTINGS)
    toys = gof.sample_toys(model, best.values, 30, np.random.default_rng(2))
    batched = gof.fit_toys(model, toys, best.values, SETTINGS)
    single = gof.fit_toys(model, toys, best.values, SETTINGS, batch=1)
    assert batched.fallbacks == 0
    assert np.array_equal(batched.twice_nll, single.twice_nll)
    assert np.array_equal(batched.values, single.values)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8))
    for toy, values, twice_nll in zip(toys, batched.values, batched.twice_nll, strict=True):
        reference, nll = pyhf.infer.mle.fit(
            toy, model, init_pars=best.values.tolist(), return_fitted_val=True
        )
        assert twice_nll == pytest.approx(float(nll), abs=1e-8)
        np.testing.assert_allclose(values, reference, atol=5e-5)


def test_toys_a_fit_cannot_solve_fall_back_to_minuit_and_are_counted(monkeypatch):
    """A toy whose Newton steps end without a valid minimum is refitted by MINUIT and counted:
    catches a failed toy's unconverged minimum kept as its statistic."""
    model = two_bins()
    data = np.r_[[62.0, 66.0], model.config.auxdata]
    best = gof.minimize(model, data, SETTINGS)
    toys = gof.sample_toys(model, best.values, 6, np.random.default_rng(1))
    good = gof.fit_toys(model, toys, best.values, SETTINGS)
    monkeypatch.setattr(gof, "TOY_ITERATIONS", 1)  # too few steps: no toy converges
    failed = gof.fit_toys(model, toys, best.values, SETTINGS)
    assert good.fallbacks == 0 and failed.fallbacks == len(toys)
    np.testing.assert_allclose(failed.twice_nll, good.twice_nll, atol=1e-4)


def test_tests_chunks_and_summary(tmp_path):
    """Tests are every variable then every pair; chunks cover them once and gather restores their
    order; the summary counts p-values below 5% and adds up the MINUIT fallbacks: catches a
    lost or repeated chunk, a summary over the wrong p-values, or fallbacks not reported."""
    tests = input_gof.tests_of(["a", "b", "c"], pairs=True)
    assert tests == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    assert input_gof.tests_of(["a", "b"], pairs=False) == [("a",), ("b",)]
    assert chunk_count(6, 4) == 2
    entries = [GofTest(t, 10, 1.0, 9, p, 0.5, 100, i, 1) for i, (t, p) in
               enumerate(zip(tests, [0.01, 0.2, 0.5, 0.03, 0.9, 0.7], strict=True))]  # fmt: skip
    chunks = [
        GofChunk("asimov", 1, 6, tuple(entries[4:])),
        GofChunk("asimov", 0, 6, tuple(entries[:4])),
    ]
    result = input_gof.gather(chunks, ["c1", "c0"])
    assert [t.variables for t in result.tests] == tests
    assert result.fraction_below_5_percent == pytest.approx(2 / 6)
    result.write(tmp_path / "gof.json")
    back = GofResults.read(tmp_path / "gof.json")
    assert back.tests == result.tests and back.data == "asimov"
    assert result.fallbacks == back.fallbacks == 0 + 1 + 2 + 3 + 4 + 5
    with pytest.raises(AnalysisError, match="miss or repeat"):
        input_gof.gather(chunks[:1], ["c1"])
    with pytest.raises(AnalysisError, match="does not exist"):
        input_gof.chunk_tests(tests, 2, 4)


def test_equally_populated_bins_and_bin_index():
    """Quantile edges give equal yields, merge for a discrete variable, give a value holding
    most events a bin of its own, and values beyond the ends fall into the outer bins: catches
    unweighted quantiles, events lost at the edges, or a test left with one bin."""
    values = np.arange(100, dtype=float)
    edges = gof_histograms.quantile_edges(values, np.ones(100), 4)
    counts = np.bincount(gof_histograms.bin_index(values, edges), minlength=4)
    assert counts.tolist() == [25, 25, 25, 25]
    weighted = gof_histograms.quantile_edges(values, np.where(values < 50, 3.0, 1.0), 2)
    assert weighted[1] == pytest.approx(33.0, abs=1.0)
    assert len(gof_histograms.quantile_edges(np.repeat([0.0, 1.0, 2.0], 10), np.ones(30), 10)) <= 4
    assert gof_histograms.bin_index(np.array([-5.0, 1e9]), edges).tolist() == [0, 3]
    # a default value of most events (no second jet) gets its own bin, the rest share the others
    defaulted = np.r_[np.full(950, -10.0), np.linspace(30.0, 300.0, 90)]
    edges = gof_histograms.quantile_edges(defaulted, np.ones(len(defaulted)), 10)
    counts = np.bincount(gof_histograms.bin_index(defaulted, edges))
    assert counts.tolist() == [950] + [10] * 9


def synthetic_samples(shift: float, seed: int = 5) -> list[gof_histograms.SampleColumns]:
    """A background with an energy-scale-like variation, a signal, and data drawn from them with
    the background's x shifted by ``shift`` (0: data the model describes)."""
    rng = np.random.default_rng(seed)

    def columns(x, y, weight):
        n = len(x)
        return {"x": x, "y": y, "weight": np.full(n, weight), "is_os": np.ones(n),
                "mt_1": np.full(n, 10.0), "category": np.zeros(n)}  # fmt: skip

    bkg_x, bkg_y = rng.normal(0.0, 1.0, 20000), rng.uniform(0.0, 1.0, 20000)
    sig_x, sig_y = rng.normal(1.0, 0.5, 2000), rng.uniform(0.0, 1.0, 2000)
    background = {
        "nominal": columns(bkg_x, bkg_y, 0.1),
        "es_up": columns(bkg_x * 1.02, bkg_y, 0.1),
        "es_down": columns(bkg_x * 0.98, bkg_y, 0.1),
    }
    n_bkg, n_sig = rng.poisson(2000), rng.poisson(40)
    data_x = np.r_[rng.normal(shift, 1.0, n_bkg), rng.normal(1.0, 0.5, n_sig)]
    data = columns(data_x, rng.uniform(0.0, 1.0, n_bkg + n_sig), 1.0)
    return [
        gof_histograms.SampleColumns("ZTT", {"process": "ZTT", "type": "mc"}, background),
        gof_histograms.SampleColumns(
            "ggH", {"process": "ggH", "type": "mc"}, {"nominal": columns(sig_x, sig_y, 0.02)}
        ),  # fmt: skip
        gof_histograms.SampleColumns("data", {"type": "data"}, {"nominal": data}),
    ]


def run_test(samples, variables, default_config, bins=5, toys=60, names=("x", "y")):
    """One test through the analysis's histograms and workspace, on the observed data
    (``names``: the variables the samples have)."""
    histograms = {**default_config["histograms"], "control_regions": {}, "signals": ["ggH"],
                  "qcd": {**default_config["histograms"]["qcd"], "from_data": False}}  # fmt: skip
    edges = gof_histograms.variable_edges(samples, list(names), histograms, bins, observed=True)
    per_sample, n_bins = gof_histograms.fill_test(samples, variables, edges, histograms)
    spec, _kept = gof_histograms.workspace_of(
        per_sample, variables, n_bins, histograms, default_config["workspace"], observed=True
    )
    model = pyhf.Workspace(spec).model()
    data = np.asarray(pyhf.Workspace(spec).data(model), dtype=float)
    return gof.saturated_test(model, data, SETTINGS, toys, 3), spec


def test_a_modelled_input_passes_on_the_analysis_histograms_and_workspace(default_config):
    """Through the analysis's histograms and workspace: data the model describes passes its
    test, the workspace has the shape variation, the bins are equally populated in data, and a
    pair is tested on the product binning: catches data and prediction histogrammed
    differently, a workspace without the variation, or a pair binned as one variable."""
    good, spec = run_test(synthetic_samples(0.0), ("x",), default_config)
    assert good.p_value > 0.05
    assert good.ndof == 4  # five bins, mu free
    modifiers = {m["name"] for c in spec["channels"] for s in c["samples"] for m in s["modifiers"]}
    assert "es" in modifiers
    observed = spec["observations"][0]["data"]
    assert max(observed) - min(observed) < 0.1 * np.mean(observed)  # equally populated in data
    pair, spec = run_test(synthetic_samples(0.0), ("x", "y"), default_config, bins=3, toys=20)
    assert pair.ndof == 8 and len(spec["observations"][0]["data"]) == 9
    assert spec["channels"][0]["name"] == "x_vs_y"


#: The toy samples of the mis-modelling test, and its luminosity (pb^-1): about 4000 pseudo-data
#: events against 30000 simulated events per sample.
KNOB_SAMPLES = ("ggH", "ZTT", "TT", "W", "data")
KNOB_LUMI = 120.0


def toy_columns(path, spec, lumi: float) -> gof_histograms.SampleColumns:
    """The muon's and tau_h's pt and eta of a toy file's events (one of each per event), as the
    gof tests read skims; simulation weighted to ``lumi``, every event in the signal region."""
    import uproot

    branches = ["Muon_pt", "Muon_eta", "Tau_pt", "Tau_eta"]
    simulation = spec["type"] == "mc"
    with uproot.open(path) as file:
        arrays = file["Events"].arrays(branches + ["genWeight"] * simulation, library="ak")
    n = len(arrays)
    columns = {name: np.asarray(arrays[branch][:, 0], dtype=float) for name, branch in
               zip(("pt_1", "eta_1", "pt_2", "eta_2"), branches, strict=True)}  # fmt: skip
    weight = np.ones(n)
    if simulation:
        generator = np.asarray(arrays["genWeight"], dtype=float)
        weight = spec["xsec"] * lumi * generator / generator.sum()
    columns.update(weight=weight, is_os=np.ones(n), mt_1=np.full(n, 10.0), category=np.zeros(n))
    name = spec.get("process", "data")
    return gof_histograms.SampleColumns(name, spec, {"nominal": columns})


@pytest.fixture(scope="module")
def knob_samples(tmp_path_factory, default_config, default_samples):
    """Toy simulation of ggH, ZTT, TT and W, and two pseudo-data sets drawn from them: one as the
    model says, one with ``toydata.truth.mismodel`` shifting the muon's eta by 0.15."""
    from analysis.selection.toydata import generate_sample
    from tests.conftest import toy_settings

    directory = tmp_path_factory.mktemp("knob")
    samples = {name: default_samples[name] for name in KNOB_SAMPLES}
    settings = {**toy_settings(default_config, samples, events=30000), "lumi": KNOB_LUMI}
    simulation = []
    for name in KNOB_SAMPLES[:-1]:
        generate_sample(name, settings, directory / f"{name}.root")
        simulation.append(toy_columns(directory / f"{name}.root", samples[name], KNOB_LUMI))
    result = {}
    for label, variable in (("modelled", None), ("mismodelled", "eta_1")):
        truth = {**settings["toydata"]["truth"], "mismodel": {"variable": variable, "shift": 0.15}}
        toydata = {**settings["toydata"], "truth": truth}
        generate_sample("data", {**settings, "toydata": toydata}, directory / f"{label}.root")
        data = toy_columns(directory / f"{label}.root", samples["data"], KNOB_LUMI)
        result[label] = [*simulation, data]
    return result


def test_the_mismodelling_knob_fails_its_variable_and_its_pairs_only(knob_samples, default_config):
    """With ``toydata.truth.mismodel`` shifting the pseudo-data's muon eta (beyond any variation
    of the model), the 1D test of eta_1 and the pairs containing it fail (p < 5%), while the same
    pseudo-data's unrelated variables and their pair pass, and eta_1 passes without the knob:
    catches a knob that does not reach the pseudo-data, one that moves other variables too, or
    tests that cannot tell a mis-modelled input from a modelled one."""
    names = ("pt_1", "eta_1", "pt_2")

    def p_value(label, variables):
        sampled, _ = run_test(knob_samples[label], variables, default_config, toys=40, names=names)
        assert sampled.fallbacks == 0
        return sampled.p_value

    threshold = gof.THRESHOLD
    assert p_value("modelled", ("eta_1",)) > threshold
    assert p_value("mismodelled", ("eta_1",)) < threshold
    assert p_value("mismodelled", ("eta_1", "pt_2")) < threshold
    assert p_value("mismodelled", ("pt_1", "eta_1")) < threshold
    assert p_value("mismodelled", ("pt_2",)) > threshold
    assert p_value("mismodelled", ("pt_1", "pt_2")) > threshold


def test_pseudo_data_are_seeded_and_not_the_toys():
    """Pseudo-data (``gof.data: pseudo``) follow from the test's seed, but not on the toys'
    stream: catches the data set being the first toy, which would bias its p-value."""
    model = two_bins()
    first, again = gof.pseudo_data(model, 4), gof.pseudo_data(model, 4)
    assert np.array_equal(first, again)
    pars = np.asarray(model.config.suggested_init(), dtype=float)
    toy = gof.sample_toys(model, pars, 1, np.random.default_rng(4))[0]
    assert not np.array_equal(first, toy)


def test_bins_without_prediction_are_left_out():
    """A bin no sample predicts (an empty product bin of a pair) is left out of the test, data
    and QCD-free simulation alike: catches a zero expectation reaching the likelihood, whose
    derivatives are not finite there (every toy would fall back to MINUIT)."""
    import hist

    def filled(values):
        histogram = hist.Hist(hist.axis.Regular(3, 0, 3), storage=hist.storage.Weight())
        histogram.view().value = values
        histogram.view().variance = values
        return histogram

    histograms = {
        "c/ZTT/nominal": filled(np.array([5.0, 0.0, 2.0])),
        "c/ggH/nominal": filled(np.array([1.0, 0.0, 0.0])),
        "c/ZTT/es_up": filled(np.array([5.0, 1.0, 2.0])),
        "c/data/nominal": filled(np.array([4.0, 3.0, 1.0])),
    }
    assert gof_histograms.predicted_bins(histograms).tolist() == [True, False, True]


def test_the_fits_goodness_of_fit_gets_a_toy_p_value(tmp_path):
    """fit.json's goodness of fit carries the p-value of ``inference.fit.gof_toys`` toys of the
    post-fit model, close to the asymptotic one on a workspace in the asymptotic regime, seeded,
    written and read back; 0 toys leaves it None and a negative count is one clear error:
    catches toys drawn away from the best fit, a p-value compared the wrong way round, a key lost
    in fit.json, or a toy count not passed on."""
    from analysis.stats import fit as fit_module
    from analysis.stats import model as model_utils
    from analysis.stats.results import FitResults
    from tests.conftest import DATA

    setup = model_utils.setup_from_files(DATA / "workspaces" / "large.json", {})
    toys = fit_module.gof_toys({"fit": {"gof_toys": 200, "gof_seed": 5}})
    record = fit_module.fit(setup, SETTINGS, toys=toys)
    quality = record.goodness_of_fit
    assert quality.toys == 200 and quality.toy_fallbacks == 0
    assert quality.toy_p_value == pytest.approx(quality.p_value, abs=0.1)
    again = fit_module.fit(setup, SETTINGS, toys=toys).goodness_of_fit
    assert again.toy_p_value == quality.toy_p_value
    record.write(tmp_path / "fit.json")
    assert FitResults.read(tmp_path / "fit.json").goodness_of_fit == quality
    plain = fit_module.fit(setup, SETTINGS, toys=fit_module.gof_toys({"fit": {"gof_toys": 0}}))
    assert plain.goodness_of_fit.toy_p_value is None and plain.goodness_of_fit.toys == 0
    with pytest.raises(AnalysisError, match="inference.fit.gof_toys"):
        fit_module.gof_toys({"fit": {"gof_toys": -1}})


def test_of_two_newton_minima_each_toy_keeps_the_lower_valid_one():
    """Per toy: the lower of two valid minima, the valid one of a valid and an invalid, the first
    where neither is valid; the values follow the -2 log L chosen: catches a choice by validity
    alone, by -2 log L alone, or rows mixed up."""
    from analysis.stats.newton import BatchMinimum

    def minima(twice_nll, valid):
        k = len(twice_nll)
        values = np.arange(k * 2, dtype=float).reshape(k, 2) + np.array(twice_nll)[:, None]
        return BatchMinimum(values, np.array(twice_nll), np.zeros(k), np.array(valid),
                            np.ones(k, dtype=int))  # fmt: skip

    scoring = minima([5.0, 3.0, 7.0, 2.0], [True, True, False, False])
    saddle_free = minima([4.0, 3.5, 9.0, 1.0], [True, True, True, False])
    kept = gof._lower_valid(scoring, saddle_free)
    np.testing.assert_array_equal(kept.twice_nll, [4.0, 3.0, 9.0, 2.0])
    np.testing.assert_array_equal(kept.valid, [True, True, True, False])
    expected = [saddle_free.values[0], scoring.values[1], saddle_free.values[2], scoring.values[3]]
    np.testing.assert_array_equal(kept.values, np.stack(expected))


def three_bins() -> pyhf.pdf.Model:
    """A signal strength, a normsys and staterror on the background: what the analysis's
    workspace has, in three bins."""
    background = {
        "name": "background", "data": [60.0, 45.0, 30.0],
        "modifiers": [
            {"name": "norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {"name": "staterror_c", "type": "staterror", "data": [4.0, 3.0, 3.0]},
        ],
    }  # fmt: skip
    signal = {"name": "signal", "data": [2.0, 6.0, 9.0],
              "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}  # fmt: skip
    spec = {"channels": [{"name": "c", "samples": [signal, background]}]}
    return pyhf.Model(spec, poi_name="mu")


def test_distribution_of_a_test_holds_its_pre_and_post_fit_yields():
    """A single-variable test's histogram: per sample the yields at the initial values and at the
    best fit, in the bins the model kept (zero in a bin left out), the post-fit band from the
    covariance of MINUIT's HESSE at the same minimum, the data only when observed: catches bins
    shifted by the left-out one, a covariance off by the factor 2 of -2 log L, samples swapped,
    or Asimov data drawn as data."""
    from analysis.stats.minimizer import minimize

    model = three_bins()
    data = np.r_[[70.0, 48.0, 52.0], model.config.auxdata]
    best = gof.saturated_test(model, data, SETTINGS, 0, 1).bestfit
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    kept = np.array([True, False, True, True])
    shown = gof.distribution_of(model, data, best, edges, kept, True, SETTINGS)

    init = np.asarray(model.config.suggested_init(), dtype=float)
    by_sample = [np.asarray(model.main_model.expected_data(p, return_by_sample=True))
                 for p in (init, best)]  # fmt: skip
    assert shown.samples == tuple(model.config.samples) and shown.edges == tuple(edges)
    assert shown.fitted == tuple(kept.tolist())
    for stage, expected in zip((shown.prefit, shown.postfit), by_sample, strict=True):
        assert np.allclose(np.asarray(stage)[:, kept], expected, rtol=1e-9)
        assert np.all(np.asarray(stage)[:, ~kept] == 0.0)
    assert shown.data == (70.0, 0.0, 48.0, 52.0)

    minuit = minimize(model, data, SETTINGS, start=best, hesse=True)
    assert np.allclose(minuit.values, best, atol=1e-3)
    step = 1e-4

    def totals(pars):
        return np.asarray(model.expected_actualdata(pars), dtype=float)

    jacobian = np.array([(totals(best + step * e) - totals(best - step * e)) / (2 * step)
                         for e in np.eye(len(best))]).T  # fmt: skip
    band = np.sqrt(np.einsum("bp,pq,bq->b", jacobian, minuit.covariance, jacobian))
    assert np.allclose(np.asarray(shown.postfit_band)[kept], band, rtol=0.02)
    assert shown.postfit_band[1] == 0.0
    assert gof.distribution_of(model, data, best, edges, kept, False, SETTINGS).data is None


def region_samples(signal_in_control: bool) -> list[gof_histograms.SampleColumns]:
    """:func:`synthetic_samples` with every other background and data event moved to high mT
    (the control region wjets_highmt), and the signal there too when ``signal_in_control``."""
    moved = []
    for sample in synthetic_samples(0.0):
        columns = {}
        for variation, values in sample.columns.items():
            n = len(values["weight"])
            high = np.arange(n) % 2 == 1
            if sample.name == "ggH":
                high = np.full(n, signal_in_control)
            columns[variation] = {**values, "mt_1": np.where(high, 100.0, 10.0)}
        moved.append(sample._replace(columns=columns))
    return moved


def test_a_control_region_is_tested_and_blinded_signal_stops_it(default_config):
    """``gof.region`` tests the events of a control region (the data counts are those with high
    mT); while blinded, the bins expecting signal above ``histograms.blind_threshold`` are left
    out of a test of observed data (exactly those), one line naming the test when that leaves
    none, and unblinded every bin is tested: catches the signal region tested instead, or
    signal-rich blinded data fitted."""
    histograms = {**default_config["histograms"], "signals": ["ggH"],
                  "qcd": {**default_config["histograms"]["qcd"], "from_data": False}}  # fmt: skip
    gof_settings = {"region": "wjets_highmt", "data": "observed", "blinded": True, "bins": 5}
    settings = {"gof": gof_settings, "histograms": histograms,
                "workspace": default_config["workspace"],
                "inference": default_config["inference"]}  # fmt: skip
    region = input_gof.region_histograms(settings)
    assert region["signal_region"] == histograms["control_regions"]["wjets_highmt"]["selection"]

    def built(samples, blinded=True):
        edges = gof_histograms.variable_edges(samples, ["x"], region, 5, observed=True)
        chosen = {**settings, "gof": {**gof_settings, "blinded": blinded}}
        return input_gof.build_test(samples, edges, ("x",), chosen)

    samples = region_samples(signal_in_control=False)
    test = built(samples)
    data_events = len(samples[-1].columns["nominal"]["weight"])
    observed = np.asarray(test.setup.data[: test.setup.model.config.nmaindata])
    assert observed.sum() == data_events // 2
    assert "ggH" not in test.setup.model.config.samples  # no signal in the control region
    blinded = built(region_samples(signal_in_control=True))
    unblinded = built(region_samples(signal_in_control=True), blinded=False)
    assert unblinded.kept.all() and 0 < np.count_nonzero(blinded.kept) < len(blinded.kept)
    signal = np.asarray(unblinded.setup.model.main_model.expected_data(
        unblinded.setup.model.config.suggested_init(), return_by_sample=True
    ))[unblinded.setup.model.config.samples.index("ggH")]  # fmt: skip
    total = np.asarray(unblinded.setup.model.expected_actualdata(
        unblinded.setup.model.config.suggested_init()))  # fmt: skip
    ratio = signal / (total - signal)
    assert np.all(ratio[~blinded.kept] > histograms["blind_threshold"])
    assert np.all(ratio[blinded.kept] <= histograms["blind_threshold"])
    with pytest.raises(AnalysisError, match="gof test x: every bin expects signal/background"):
        input_gof.build_test(
            samples, gof_histograms.variable_edges(samples, ["x"], region, 5, observed=True),
            ("x",), {**settings, "histograms": {**histograms, "blind_threshold": -1.0}},
        )  # fmt: skip


def test_a_test_of_several_eras_sums_them_as_merged_channels(default_config):
    """Samples of two eras, era b without the ``es`` variation (eras with different variation
    names): the test's one channel sums the eras as the analysis's merged channels do, era b at
    its nominal in ``es``, each era with its own luminosity parameter instead of pyhf's one.
    Catches the eras pooled as one (``es`` would lose era b's half: a factor 0.55, not 1.05)."""
    rng = np.random.default_rng(3)

    def columns(x, weight):
        n = len(x)
        return {"x": x, "weight": np.full(n, weight), "is_os": np.ones(n),
                "mt_1": np.full(n, 10.0), "category": np.zeros(n)}  # fmt: skip

    ztt = {era: rng.normal(0.0, 1.0, 5000) for era in "ab"}
    mc, data = {"process": "ZTT", "type": "mc"}, {"type": "data"}
    samples = [
        gof_histograms.SampleColumns("ZTT_a", mc, {
            "nominal": columns(ztt["a"], 0.1), "es_up": columns(ztt["a"], 0.11),
            "es_down": columns(ztt["a"], 0.09)}, era="a"),
        gof_histograms.SampleColumns("ZTT_b", mc, {"nominal": columns(ztt["b"], 0.1)}, era="b"),
        gof_histograms.SampleColumns("ggH_a", {"process": "ggH", "type": "mc"},
                                     {"nominal": columns(rng.normal(1.0, 0.5, 500), 0.02)},
                                     era="a"),
        *(gof_histograms.SampleColumns(f"data_{era}", data,
                                       {"nominal": columns(rng.normal(0.0, 1.0, 1000), 1.0)},
                                       era=era) for era in "ab"),
    ]  # fmt: skip
    eras = {"names": ["a", "b"], "channels": "merged", "decorrelated": [],
            "lumi_uncertainty": {"a": {"lumi_a": 0.02}, "b": {"lumi_b": 0.05}}}  # fmt: skip
    histograms = {**default_config["histograms"], "control_regions": {}, "signals": ["ggH"],
                  "qcd": {**default_config["histograms"]["qcd"], "from_data": False}}  # fmt: skip
    edges = gof_histograms.variable_edges(samples, ["x"], histograms, 5, observed=True)
    per_sample, n_bins = gof_histograms.fill_test(samples, ("x",), edges, histograms)
    spec, _ = gof_histograms.workspace_of(
        per_sample, ("x",), n_bins, histograms, default_config["workspace"], observed=True,
        eras=eras, sample_eras=[sample.era for sample in samples],
    )  # fmt: skip
    background = next(s for s in spec["channels"][0]["samples"] if s["name"] == "ZTT")
    norms = {m["name"]: m["data"]["hi"] for m in background["modifiers"] if m["type"] == "normsys"}
    share_a = 0.1 * len(ztt["a"]) / (0.1 * len(ztt["a"]) + 0.1 * len(ztt["b"]))
    assert norms["es"] == pytest.approx(1 + 0.1 * share_a, rel=1e-6)
    assert norms["lumi_a"] == pytest.approx(1 + 0.02 * share_a, rel=1e-6)
    assert norms["lumi_b"] == pytest.approx(1 + 0.05 * (1 - share_a), rel=1e-6)
    assert not {m["type"] for m in background["modifiers"]} & {"lumi"}
