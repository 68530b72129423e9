"""The inference stages against independent computations (cabinetry, and pyhf called directly).

Workspaces (tests/data/workspaces, written by make_workspaces.py): ``simple`` (one channel,
normsys/histosys/lumi), ``multichannel`` (signal and control region, staterror, shapesys, a free
background normalisation) and ``large`` (three categories, two POIs, 33 parameters).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import weakref

import cabinetry
import numpy as np
import pyhf
import pytest
import scipy.optimize

from analysis.core.errors import AnalysisError
from analysis.stats import fit as fit_module
from analysis.stats import limits, minimizer, pulls, ranking, scan
from analysis.stats import model as model_utils
from analysis.stats.results import RankingChunk, ScanChunk
from tests.conftest import DATA

WORKSPACES = DATA / "workspaces"
SETTINGS = minimizer.FitSettings()
#: Agreement required on POI-level numbers.
TOLERANCE = 1e-3
#: Tolerance of the reference minimisations (tighter than pyhf's default, so that the reference
#: is not the less precise side of a comparison at the 1e-3 level).
REFERENCE_TOL = 1e-4

logging.getLogger("cabinetry").setLevel(logging.WARNING)


def load(name: str, **settings) -> model_utils.Setup:
    return model_utils.setup_from_files(WORKSPACES / f"{name}.json", settings)


@pytest.fixture(scope="module", params=["simple", "multichannel", "large"])
def fitted(request, tmp_path_factory):
    """(name, setup, the fit, the fit read back from its fit.json, as later stages read it) of
    the nominal fit of each workspace."""
    setup = load(request.param)
    result = fit_module.fit(setup, SETTINGS)
    path = tmp_path_factory.mktemp(request.param) / "fit.json"
    result.write(path)
    return request.param, setup, result, fit_module.read_fit(path, setup)


@pytest.fixture(scope="module")
def references():
    """cabinetry fits of each workspace (with MINOS on the POI and goodness of fit), cached."""
    cache = {}

    def get(name: str, setup: model_utils.Setup):
        if name not in cache:
            pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
            cache[name] = cabinetry.fit.fit(
                setup.model,
                setup.data,
                minos=list(setup.pois),
                goodness_of_fit=True,
                tolerance=REFERENCE_TOL,
            )
        return cache[name]

    return get


def pyhf_fixed_fit(setup, fixed_values: dict[str, float], data=None) -> tuple[np.ndarray, float]:
    """A fit by pyhf alone with some parameters fixed: (best-fit values, -2 log L)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    model = setup.model
    init = model.config.suggested_init()
    fixed = model.config.suggested_fixed()
    for name, value in fixed_values.items():
        index = model.config.par_names.index(name)
        init[index], fixed[index] = value, True
    values, twice_nll = pyhf.infer.mle.fit(
        setup.data if data is None else data,
        model,
        init_pars=init,
        fixed_params=fixed,
        return_fitted_val=True,
    )
    return np.asarray(values), float(twice_nll)


# --- the nominal fit -----------------------------------------------------------------------------


def test_fit_matches_cabinetry(fitted, references):
    name, setup, result, _ = fitted
    reference = references(name, setup)
    assert result.converged
    assert reference.labels == list(result.labels)
    np.testing.assert_allclose(result.values, reference.bestfit, atol=TOLERANCE)
    np.testing.assert_allclose(result.uncertainties, reference.uncertainty, atol=TOLERANCE)
    assert result.twice_nll == pytest.approx(reference.best_twice_nll, abs=TOLERANCE)
    np.testing.assert_allclose(result.correlation, reference.corr_mat, atol=5 * TOLERANCE)
    assert result.goodness_of_fit.p_value == pytest.approx(reference.goodness_of_fit, abs=1e-3)


def test_fit_record_and_reading_it_back(fitted):
    name, setup, result, record = fitted
    document = result.to_json()
    assert set(document) >= {"poi", "asimov", "converged", "twice_nll", "bestfit", "correlation"}
    assert document["poi"] == setup.pois[0] and document["asimov"] is False
    assert list(document["bestfit"]) == setup.model.config.par_names
    # read back exactly
    assert record.to_json() == document
    np.testing.assert_array_equal(record.values, result.values)
    np.testing.assert_array_equal(record.covariance, result.covariance)
    # the same workspace fitted again gives the same bytes
    again = fit_module.fit(load(name), SETTINGS).to_json()
    assert json.dumps(again, sort_keys=True) == json.dumps(document, sort_keys=True)


def test_fit_json_from_another_workspace_is_refused(tmp_path):
    fit_module.fit(load("simple"), SETTINGS).write(tmp_path / "fit.json")
    with pytest.raises(AnalysisError, match="another workspace"):
        fit_module.read_fit(tmp_path / "fit.json", load("multichannel"))
    with pytest.raises(AnalysisError, match="other POIs or data"):
        fit_module.read_fit(tmp_path / "fit.json", load("simple", pois=["bkg_norm"]))
    with pytest.raises(AnalysisError, match="other POIs or data"):
        fit_module.read_fit(tmp_path / "fit.json", load("simple", asimov=True))


def test_a_fit_that_does_not_converge_says_so():
    setup = load("large")
    result = fit_module.fit(setup, minimizer.FitSettings(max_calls=10))
    assert result.converged is False
    # the whole fallback chain was tried, and the record says so
    assert [attempt.start for attempt in result.attempts] == [
        "start",
        "continued",
        "workspace initial values",
    ]
    document = result.to_json()
    assert document["converged"] is False and len(document["minuit"]) == 3


def test_asimov_fit_returns_the_generating_parameters():
    setup = load("multichannel", asimov=True)
    result = fit_module.fit(setup, SETTINGS)
    expected = model_utils.asimov_parameters(setup.model)
    np.testing.assert_allclose(result.values, expected, atol=2e-3)
    assert result.to_json()["asimov"] is True


@pytest.mark.parametrize("workspace", ["simple", "large"])
def test_closure_injected_signal_and_shifted_nuisance(workspace):
    """Pseudo-data at mu = 2 with a nuisance at +1 sigma: the fit recovers both.

    The auxiliary measurements are generated at the truth as well. On the Asimov pseudo-data the
    fit returns the truth; on Poisson-fluctuated pseudo-data (a fixed seed) it lies within one
    uncertainty of it.
    """
    setup = load(workspace)
    model = setup.model
    truth = model_utils.asimov_parameters(model)
    poi = model.config.poi_index
    shifted = model.config.par_names.index("bkg_shape" if workspace == "simple" else "jet_es")
    truth[poi], truth[shifted] = 2.0, 1.0
    asimov = np.asarray(model.expected_data(truth), dtype=float)
    n_main = model.config.nmaindata
    fluctuated = asimov.copy()
    fluctuated[:n_main] = np.random.default_rng(7).poisson(asimov[:n_main])
    for data, exact in ((asimov, True), (fluctuated, False)):
        result = fit_module.fit(setup._replace(data=data), SETTINGS)
        assert result.converged
        for index, value in ((poi, 2.0), (shifted, 1.0)):
            if exact:
                assert result.values[index] == pytest.approx(value, abs=TOLERANCE)
            else:
                assert abs(result.values[index] - value) < result.uncertainties[index]


# --- pulls ---------------------------------------------------------------------------------------


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
    modifiers = {pull.modifier for pull in constrained}
    if name == "multichannel":
        assert modifiers == {"lumi", "normsys", "histosys", "staterror", "shapesys"}


# --- ranking -------------------------------------------------------------------------------------


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
            assert getattr(entry, key) == pytest.approx(values[i], abs=TOLERANCE), (label, key)
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
                assert got == pytest.approx(values[poi] - result.values[poi], abs=TOLERANCE)
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
    assert impact.impact_prefit_down == pytest.approx(
        values[poi] - result.values[poi], abs=TOLERANCE
    )


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


# --- scans ---------------------------------------------------------------------------------------


def test_scan_matches_cabinetry_and_minos(fitted, references):
    name, setup, result, record = fitted
    poi = setup.pois[0]
    settings = scan.ScanSettings(points=15, chunk_size=8)
    points = scan.grid(setup, record, [poi], settings)
    chunks = []
    for chunk in range(scan.chunk_count(len(points), settings.chunk_size)):
        selected = points[chunk * settings.chunk_size : (chunk + 1) * settings.chunk_size]
        profiled = scan.profile(setup, record, [poi], selected, SETTINGS)
        chunks.append(ScanChunk((poi,), chunk, len(points), tuple(profiled)))
    document = scan.gather_1d(chunks[::-1], record, poi)  # order of the chunks does not matter
    assert list(document.values) == [point[0] for point in points]
    reference = cabinetry.fit.scan(
        setup.model,
        setup.data,
        poi,
        par_range=(points[0][0], points[-1][0]),
        n_steps=len(points),
        tolerance=REFERENCE_TOL,
    )
    np.testing.assert_allclose(document.values, reference.parameter_values, atol=1e-12)
    np.testing.assert_allclose(document.delta_twice_nll, reference.delta_nlls, atol=TOLERANCE)
    # the 68% interval is MINOS's
    low, high = references(name, setup).minos_uncertainty[poi]
    bestfit = result.values[setup.model.config.poi_index]
    assert document.interval_68 == pytest.approx([bestfit + low, bestfit + high], abs=TOLERANCE)
    # the 95% interval: where pyhf's profile likelihood crosses 3.84, found by root finding
    minimum = result.twice_nll
    threshold = scipy.stats.chi2.ppf(0.95, 1)

    def excess(value: float) -> float:
        return pyhf_fixed_fit(setup, {poi: value})[1] - minimum - threshold

    # bracketed within +-0.01 of our ends (brentq fails if the crossing is not in there)
    ends = [
        scipy.optimize.brentq(excess, end - 0.01, end + 0.01, xtol=1e-4)
        for end in document.interval_95
    ]
    assert document.interval_95 == pytest.approx(ends, abs=TOLERANCE)


def test_two_dimensional_scan():
    setup = load("large", pois=["mu_ggH", "mu_qqH"])
    assert setup.pois == ("mu_ggH", "mu_qqH")
    record = fit_module.fit(setup, SETTINGS)
    settings = scan.ScanSettings(points_2d=4, chunk_size=5)
    points = scan.grid(setup, record, list(setup.pois), settings)
    assert len(points) == 16
    profiled = scan.profile(setup, record, list(setup.pois), points, SETTINGS)
    document = scan.gather_2d(
        [ScanChunk(setup.pois, 0, len(points), tuple(profiled))], record, setup.pois
    )
    surface = document.delta_twice_nll
    assert surface.shape == (4, 4) and surface.min() >= 0
    x, y = document.x[1], document.y[2]
    _, reference = pyhf_fixed_fit(setup, {"mu_ggH": x, "mu_qqH": y})
    assert surface[1, 2] == pytest.approx(reference - record.twice_nll, abs=TOLERANCE)


def test_scan_interval_of_a_parabola():
    values = np.linspace(-3.0, 5.0, 17)
    delta = ((values - 1.0) / 2.0) ** 2  # best fit 1, sigma 2
    assert scan.interval(values, delta, 1.0, scan.LEVELS["interval_68"]) == pytest.approx(
        [-1.0, 3.0], abs=1e-9
    )
    # not crossed on the right within the range
    assert scan.interval(values[:10], delta[:10], 1.0, 0.95)[1] is None


# --- significance and limits ---------------------------------------------------------------------


def test_significance_matches_cabinetry(fitted):
    _, setup, _, _ = fitted
    poi = setup.pois[0]
    ours = limits.significance(setup, poi, SETTINGS)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    reference = cabinetry.fit.significance(setup.model, setup.data, tolerance=REFERENCE_TOL)
    assert ours.observed_significance == pytest.approx(
        reference.observed_significance, abs=TOLERANCE
    )
    assert ours.expected_significance == pytest.approx(
        reference.expected_significance, abs=TOLERANCE
    )
    assert ours.observed_p_value == pytest.approx(reference.observed_p_value, abs=TOLERANCE)


def test_limits_match_pyhf_root_finding():
    setup = load("simple")
    ours = limits.upper_limit(setup, "mu", SETTINGS)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    bounds = setup.model.config.suggested_bounds()
    observed, expected = pyhf.infer.intervals.upper_limits.toms748_scan(
        setup.data, setup.model, 0.0, 10.0, rtol=1e-6, par_bounds=bounds, test_stat="qtilde"
    )
    assert ours.observed == pytest.approx(float(observed), abs=TOLERANCE)
    np.testing.assert_allclose(
        ours.expected_band, np.asarray(expected, dtype=float), atol=TOLERANCE
    )


# --- workspaces, patches and settings ------------------------------------------------------------


def test_patchset_entry_is_applied():
    plain = load("simple")
    patched = model_utils.setup_from_files(
        WORKSPACES / "simple.json",
        {"patch": str(WORKSPACES / "patchset.json"), "patch_name": "signal_high"},
    )
    pars = plain.model.config.suggested_init()
    signal = np.asarray(patched.model.expected_actualdata(pars)) - np.asarray(
        plain.model.expected_actualdata(pars)
    )
    # the patch triples the signal: the difference is twice the original signal
    assert signal == pytest.approx(2.0 * np.array([2.0, 5.0, 9.0, 4.0]))
    assert patched.digest != plain.digest


def test_patch_errors_are_one_line(tmp_path):
    patchset = str(WORKSPACES / "patchset.json")
    with pytest.raises(AnalysisError, match="set inference.patch_name"):
        model_utils.setup_from_files(WORKSPACES / "simple.json", {"patch": patchset})
    with pytest.raises(AnalysisError, match="no patch named 'nope'"):
        model_utils.setup_from_files(
            WORKSPACES / "simple.json", {"patch": patchset, "patch_name": "nope"}
        )
    with pytest.raises(AnalysisError, match="another background-only workspace"):
        model_utils.setup_from_files(
            WORKSPACES / "multichannel.json", {"patch": patchset, "patch_name": "signal_low"}
        )
    plain_patch = tmp_path / "patch.json"
    plain_patch.write_text(json.dumps([{"op": "remove", "path": "/channels/5"}]))
    with pytest.raises(AnalysisError, match="does not apply"):
        model_utils.setup_from_files(WORKSPACES / "simple.json", {"patch": str(plain_patch)})


def test_model_errors_name_the_key(tmp_path):
    with pytest.raises(AnalysisError, match="no parameter 'mu_X' to use as POI"):
        load("simple", pois=["mu_X"])
    with pytest.raises(AnalysisError, match="several bins and cannot be a POI"):
        load("multichannel", pois=["staterror_SR"])
    with pytest.raises(AnalysisError, match="no measurement 'other'"):
        load("simple", measurement="other")
    not_a_workspace = tmp_path / "ws.json"
    not_a_workspace.write_text(json.dumps({"hello": 1}))
    with pytest.raises(AnalysisError, match="not a pyhf workspace"):
        model_utils.setup_from_files(not_a_workspace, {})
    spec = copy.deepcopy(json.loads((WORKSPACES / "multichannel.json").read_text()))
    spec["observations"] = spec["observations"][:1]
    (tmp_path / "nodata.json").write_text(json.dumps(spec))
    with pytest.raises(AnalysisError, match="inference.asimov"):
        model_utils.setup_from_files(tmp_path / "nodata.json", {})
    assert model_utils.setup_from_files(tmp_path / "nodata.json", {"asimov": True}).asimov


# --- the workflow --------------------------------------------------------------------------------


@pytest.mark.slow
def test_inference_workflow_on_a_patched_external_workspace(tmp_path):
    """`snakemake inference` on a published-style workspace with a PatchSet: every output of the
    results contract, numbers equal to the in-process computation, and a rerun has nothing to do.
    Then `snakemake` (all): the fit figures of that workspace, and no stage upstream of it."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    results = tmp_path / "results"
    settings = {
        "external_workspace": str(WORKSPACES / "simple.json"),
        "patch": str(WORKSPACES / "patchset.json"),
        "patch_name": "signal_high",
        "asimov": False,  # the default (null) fits Asimov data while our analysis is blinded
        "ranking": {"chunk_size": 2},
        "scan": {"points": 15, "chunk_size": 8},
    }
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump({"results": str(results), "inference": settings}))

    def snakemake(*args: str, target: str = "inference", check: bool = True) -> str:
        command = [sys.executable, "-m", "snakemake", "--cores", "2", target]
        run = subprocess.run(
            [*command, "--configfile", str(configfile), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            # the jobs' `python` is this interpreter, whatever the caller's PATH
            env={**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        )
        assert run.returncode == 0 or not check, run.stderr[-3000:]
        return run.stdout + run.stderr

    snakemake()
    fit_dir = results / "fit"
    fit = json.loads((fit_dir / "fit.json").read_text())
    assert fit["poi"] == "mu" and fit["asimov"] is False and fit["converged"] is True
    setup = model_utils.setup_from_files(WORKSPACES / "simple.json", settings)
    expected = fit_module.fit(setup, SETTINGS)
    assert fit["bestfit"]["mu"] == pytest.approx(
        [expected.values[2], expected.uncertainties[2]], abs=1e-9
    )
    assert fit["correlation"]["parameters"] == setup.model.config.par_names
    # three ranked parameters in two chunks, merged and sorted
    entries = json.loads((fit_dir / "ranking.json").read_text())
    assert sorted(entry["parameter"] for entry in entries) == ["bkg_norm", "bkg_shape", "lumi"]
    keys = {"parameter", "pull", "constraint", "impact_prefit_up", "impact_prefit_down"}
    assert all(keys | {"impact_postfit_up", "impact_postfit_down"} <= set(e) for e in entries)
    totals = [abs(e["impact_postfit_up"]) + abs(e["impact_postfit_down"]) for e in entries]
    assert totals == sorted(totals, reverse=True)
    assert len(list((fit_dir / "ranking").glob("chunk_*.json"))) == 2
    scan_document = json.loads((fit_dir / "scan_mu.json").read_text())
    assert scan_document["poi"] == "mu" and len(scan_document["values"]) == 15
    assert len(scan_document["delta_twice_nll"]) == 15 and len(scan_document["interval_68"]) == 2
    pulls_document = json.loads((fit_dir / "pulls.json").read_text())
    assert {p["parameter"] for p in pulls_document["constrained"]} == {
        "bkg_norm",
        "bkg_shape",
        "lumi",
    }
    significance = json.loads((fit_dir / "significance.json").read_text())["pois"]["mu"]
    assert significance["observed_significance"] > 0
    limit = json.loads((fit_dir / "limits.json").read_text())["pois"]["mu"]
    assert limit["expected_minus2sigma"] < limit["expected"] < limit["expected_plus2sigma"]
    # a rerun has nothing to do
    assert "Nothing to be done" in snakemake("--dry-run")

    # the default target adds the fit figures (no histograms: stacks by bin index, no templates)
    output = snakemake(target="all")
    assert "rule histograms" not in output and "rule train" not in output
    figures = {p.name for p in (results / "plots" / "fit").rglob("*.png")}
    assert {"pulls.png", "impacts.png", "correlation.png", "scan_mu.png", "limits.png"} <= figures
    assert {
        f"{channel}_{stage}.png" for channel in ("SR",) for stage in ("prefit", "postfit")
    } <= figures, figures
    assert "| data |" in (results / "plots" / "fit" / "yields.md").read_text()
    # a scan figure of a parameter that is not a POI is refused, naming the key
    configfile.write_text(
        yaml.safe_dump(
            {"results": str(results), "inference": settings, "plots": {"scans": ["lumi"]}}
        )
    )
    refused = snakemake("--dry-run", target="all", check=False)
    assert "plots.scans: lumi is not a POI of the fit (mu)" in refused


def test_command_line_errors_are_one_line(tmp_path, capsys):
    from analysis.stats import fit as fit_cli

    code = fit_cli.main(
        ["--workspace", str(tmp_path / "missing.json"), "--output", str(tmp_path / "fit.json")]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "missing.json: file not found" in lines[0]
    assert not (tmp_path / "fit.json").exists()
    code = fit_cli.main(
        [
            "--workspace",
            str(WORKSPACES / "simple.json"),
            "--settings",
            json.dumps({"pois": ["nope"]}),
            "--output",
            str(tmp_path / "fit.json"),
        ]
    )
    assert code == 1 and "no parameter 'nope' to use as POI" in capsys.readouterr().err


@pytest.mark.parametrize("max_batch", [64, 5])
def test_batched_gradient_against_single_evaluations(monkeypatch, max_batch):
    """The batched central differences equal ones from single pyhf evaluations, in any batching."""
    monkeypatch.setattr(minimizer, "MAX_BATCH", max_batch)
    setup = load("multichannel")  # staterror, shapesys, normsys, histosys, lumi, normfactors
    model = setup.model
    monkeypatch.setattr(minimizer, "_BATCHED_MODELS", weakref.WeakKeyDictionary())
    pars = np.asarray(model.config.suggested_init()) + 0.01 * np.arange(model.config.npars) / 19
    gradient = minimizer.gradient_function(model, setup.data)(pars)
    steps = minimizer.GRADIENT_STEP * minimizer.default_steps(model)
    expected = []
    for i, step in enumerate(steps):
        up, down = pars.copy(), pars.copy()
        up[i] += step
        down[i] -= step
        difference = model.logpdf(up, setup.data)[0] - model.logpdf(down, setup.data)[0]
        expected.append(-2.0 * difference / (2.0 * step))
    np.testing.assert_allclose(gradient, expected, rtol=1e-9, atol=1e-9)
    # and it is the derivative: compare with a coarser step
    coarse = []
    for i, step in enumerate(10 * steps):
        up, down = pars.copy(), pars.copy()
        up[i] += step
        down[i] -= step
        difference = model.logpdf(up, setup.data)[0] - model.logpdf(down, setup.data)[0]
        coarse.append(-2.0 * difference / (2.0 * step))
    np.testing.assert_allclose(gradient, coarse, rtol=1e-4, atol=1e-6)


def test_the_workspace_our_analysis_builds():
    """Fit, significance and impacts on the toy analysis's own workspace (38 parameters, six
    channels; its blinded bins hold the prediction) against cabinetry and plain pyhf fits."""
    setup = load("toy_analysis")
    result = fit_module.fit(setup, SETTINGS)
    assert result.converged and setup.model.config.npars > 30
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=REFERENCE_TOL))
    reference = cabinetry.fit.fit(setup.model, setup.data, tolerance=REFERENCE_TOL)
    poi = setup.model.config.poi_index
    assert result.values[poi] == pytest.approx(reference.bestfit[poi], abs=TOLERANCE)
    assert result.uncertainties[poi] == pytest.approx(reference.uncertainty[poi], abs=TOLERANCE)
    np.testing.assert_allclose(result.values, reference.bestfit, atol=5 * TOLERANCE)
    assert result.twice_nll == pytest.approx(reference.best_twice_nll, abs=TOLERANCE)
    significance = limits.significance(setup, "mu", SETTINGS)
    expected = cabinetry.fit.significance(setup.model, setup.data, tolerance=REFERENCE_TOL)
    assert significance.observed_significance == pytest.approx(
        expected.observed_significance, abs=TOLERANCE
    )
    # impacts of the two parameters with the largest post-fit effect, against pyhf refits
    names = setup.model.config.par_names
    labels = ["staterror_ggH[0]", "tau_id"]
    for impact in ranking.impacts(setup, result, labels, SETTINGS).impacts:
        i = names.index(impact.parameter)
        target = result.values[i] + result.uncertainties[i]
        values, _ = pyhf_fixed_fit(setup, {impact.parameter: target})
        assert impact.impact_postfit_up == pytest.approx(
            values[poi] - result.values[poi], abs=TOLERANCE
        )
