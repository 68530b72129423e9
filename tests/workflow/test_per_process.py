"""One tiny toy run of `snakemake plots_fit` with `workspace.poi: per_process` and both signal
strengths as POIs: the workspace's normfactors, the fit, ranking, scans, contour and limits of
two POIs, the fit figures checked by what they show against the files they are drawn from, and
the histogram stage's yields tables against sums computed here from the skims and histograms.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pyhf
import pytest
import uproot
import yaml

from analysis.core.config import load_yaml
from analysis.core.io import read_json, read_with_friends
from analysis.plots import fit as plot_fit
from analysis.plots import scans as plot_scans
from analysis.plots.style import math_name, style_from_settings
from analysis.stats.model import matches_any
from analysis.stats.results import (
    FitResults,
    LimitResults,
    PullsResults,
    RankingResults,
    Scan2DResults,
    ScanResults,
)
from tests.conftest import REPO, TINY_TOY_CONFIG, merge_config
from tests.plots import artists
from tests.plots.test_style import overlaps
from tests.workflow.conftest import copy_results
from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.slow

SIGNALS = ("ggH", "qqH")
#: the results of the tiny run that the POI settings change
RERUN = ("workspace", "fit", "datacard", "xml")
POIS = [f"mu_{signal}" for signal in SIGNALS]


def _settings(results: Path) -> dict:
    """The tiny toy analysis with one POI per signal, both fitted (a 5 x 5 two-POI scan); the
    POIs' upper bound raised to 50, above the expected limit on mu_qqH of this small dataset
    (about 14, +2 sigma 36)."""
    inference = copy.deepcopy(TINY_TOY_CONFIG["inference"])
    inference["pois"] = POIS
    inference["scan"]["points_2d"] = 5
    workspace = {"poi": "per_process", "poi_bounds": [0.0, 50.0]}
    return {**TINY_TOY_CONFIG, "results": str(results), "workspace": workspace,
            "inference": inference}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_run) -> tuple[Path, dict]:
    """The results directory of the run and the config it ran with (the shipped one updated).
    Its stages up to the histograms are those of the session's tiny toy run (copied): the POI
    settings change the workspace and what follows."""
    tmp = tmp_path_factory.mktemp("per_process")
    copy_results(tiny_run[1], tmp / "results", rerun=RERUN)
    settings = _settings(tmp / "results")
    configfile = tmp / "per_process.yaml"
    configfile.write_text(yaml.safe_dump(settings))
    # the whole chain to the figures, with two POIs' scans and limits: longer than a plain run
    snakemake("plots_fit", "--configfile", str(configfile), timeout=2400)
    config = load_yaml(REPO / "config" / "config.yaml")
    merge_config(config, settings)
    return tmp / "results", config


def test_one_normfactor_per_signal_process(run):
    """Each signal sample carries its own mu, nothing else does, and raising mu_ggH alone adds
    exactly the ggH yields (pyhf, from the workspace file): catches a shared or swapped POI."""
    results, _ = run
    spec = read_json(results / "workspace" / "workspace.json")
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            normfactors = [m["name"] for m in sample["modifiers"] if m["type"] == "normfactor"]
            mus = [name for name in normfactors if name.startswith("mu")]
            assert mus == ([f"mu_{sample['name']}"] if sample["name"] in SIGNALS else []), (
                channel["name"], sample["name"], normfactors,
            )  # fmt: skip
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    assert sorted(p["name"] for p in spec["measurements"][0]["config"]["parameters"]
                  if p["name"].startswith("mu")) == POIS  # fmt: skip
    init = np.asarray(model.config.suggested_init(), dtype=float)
    for poi, signal in zip(POIS, SIGNALS, strict=True):
        raised = init.copy()
        raised[model.config.par_names.index(poi)] += 1.0
        added = model.expected_actualdata(raised) - model.expected_actualdata(init)
        by_sample = model.main_model.expected_data(init, return_by_sample=True)
        signal_yields = np.asarray(by_sample)[model.config.samples.index(signal)]
        np.testing.assert_allclose(added, signal_yields, rtol=1e-9, atol=1e-9)


def test_fit_ranking_scans_and_limits_of_both_pois(run):
    """The Asimov fit of the blinded analysis returns 1 for both POIs; the ranking is of the
    first POI and leaves it out; each POI has its scan with a 68% interval around 1 (its lower end
    open where it reaches the bound 0, as on this small dataset), the pair its 5 x 5 surface, and
    each its limit."""
    results, _ = run
    fit = FitResults.read(results / "fit" / "fit.json")
    assert fit.pois == tuple(POIS) and fit.poi == POIS[0] and fit.asimov and fit.converged
    for poi in POIS:
        assert fit.bestfit(poi)[0] == pytest.approx(1.0, abs=2e-3), poi
    ranked = [
        entry.parameter for entry in RankingResults.read(results / "fit/ranking.json").impacts
    ]
    assert POIS[0] not in ranked and POIS[1] in ranked and len(ranked) > 10
    for poi in POIS:
        scan = ScanResults.read(results / "fit" / f"scan_{poi}.json")
        low, high = scan.interval_68  # the lower end is open (None) where it reaches 0
        assert scan.poi == poi and (low is None or low < 1.0) and 1.0 < high
    surface = Scan2DResults.read(results / "fit" / "scan2d.json")
    assert surface.pois == tuple(POIS) and surface.delta_twice_nll.shape == (5, 5)
    limits = LimitResults.read(results / "fit" / "limits.json")
    assert sorted(limits.pois) == POIS and limits.asimov
    assert all(limit.expected_minus2sigma < limit.expected for limit in limits.pois.values())


def test_fit_figures_show_the_fit(run, tmp_path, monkeypatch):
    """The workflow's pulls, impacts, correlation, scan, contour and limits figures are the ones
    drawn here from its JSON files (same bytes), and what they show, read back from the artists,
    is those files' numbers, with labels that do not overlap."""
    results, config = run
    plots = config["plots"]
    style = style_from_settings(plots)
    fit_path = str(results / "fit" / "fit.json")
    fit = FitResults.read(fit_path)
    exclude = plots["exclude_parameters"]
    pulls = [pull for pull in PullsResults.read(results / "fit" / "pulls.json").constrained
             if not matches_any(pull.parameter, exclude)]  # fmt: skip
    ranking = str(results / "fit" / "ranking.json")
    top = int(plots["ranking_top"])
    with artists.captured_figures(monkeypatch) as figures:
        written = [
            *plot_fit.plot_pulls(pulls, tmp_path / "pulls", style),
            *plot_fit.plot_impacts(ranking, fit_path, top, tmp_path / "impacts", style),
            *plot_fit.plot_correlation(fit_path, float(plots["correlation_threshold"]),
                                       tmp_path / "correlation", style, exclude),
            *[path for poi in POIS for path in plot_scans.plot_scan(
                str(results / "fit" / f"scan_{poi}.json"), tmp_path / f"scan_{poi}", style)],
            *plot_scans.plot_contour(str(results / "fit" / "scan2d.json"), tmp_path / "contour",
                                     style),
            *plot_scans.plot_limits(str(results / "fit" / "limits.json"), tmp_path / "limits",
                                    style),
        ]  # fmt: skip
        pulls_fig, impacts_fig, correlation_fig, *scan_figs, contour_fig, limits_fig = figures
        artists.check_pulls(pulls_fig, pulls)
        artists.check_impacts(impacts_fig, RankingResults.read(ranking).impacts[:top], fit)
        shown = [name for name in artists.tick_labels(correlation_fig.axes[0].yaxis)]
        assert shown and not any(matches_any(name, exclude) for name in shown)
        artists.check_correlation(correlation_fig, fit, shown)
        for poi, scan_fig in zip(POIS, scan_figs, strict=True):
            artists.check_scan(scan_fig, ScanResults.read(results / "fit" / f"scan_{poi}.json"))
        artists.check_contour(contour_fig, Scan2DResults.read(results / "fit" / "scan2d.json"))
        artists.check_limits(limits_fig, LimitResults.read(results / "fit" / "limits.json"),
                             math_name)  # fmt: skip
        collisions = {path.name: found for path, fig in zip(
            [p for p in written if p.suffix == ".png"], figures, strict=True)
            if (found := overlaps(fig, monkeypatch))}  # fmt: skip
        assert not collisions, collisions
    for path in written:
        if path.suffix == ".png":
            workflow_figure = results / "plots" / "fit" / path.name
            assert workflow_figure.read_bytes() == path.read_bytes(), path.name


def _yields_rows(markdown: str) -> dict[str, dict[str, str]]:
    """{channel: {row name: cell}} of a yields.md."""
    tables: dict[str, dict[str, str]] = {}
    channel = None
    for line in markdown.splitlines():
        if line.startswith("### "):
            channel = line[4:].strip()
            tables[channel] = {}
        elif channel and (row := re.match(r"^\| (.+?) \| (.+?) \|$", line)):
            if row.group(1) not in ("process", "---"):
                tables[channel][row.group(1)] = row.group(2)
    return tables


def _data_counts(results: Path, config: dict) -> dict[str, np.ndarray]:
    """Data events per channel and bin, counted here from the data skims, friends and scores
    with the configured selections and the run's binning (not the histogram code)."""
    settings, classes = config["histograms"], [c["name"] for c in config["train"]["classes"]]
    sample = results / "preselect" / "data" / "nominal.root"
    columns = read_with_friends(
        sample, [results / "friends" / "data" / "nominal.root",
                 results / "scores" / "data" / "nominal.root"],
        ["is_os", "mt_1", "category", "max_score"],
    )  # fmt: skip
    edges = read_json(results / "histograms" / "binning.json")
    regions = {name: ({**settings["signal_region"]}, "max_score", index)
               for index, name in enumerate(classes)}  # fmt: skip
    for name, spec in settings["control_regions"].items():
        regions[name] = (spec["selection"], spec["observable"], None)
    counts = {}
    for name, (selection, observable, category) in regions.items():
        keep = np.ones(len(columns["is_os"]), dtype=bool)
        for column, cut in selection.items():
            values = columns[column]
            if isinstance(cut, list):
                keep &= (values >= (-np.inf if cut[0] is None else cut[0])) & (
                    values < (np.inf if cut[1] is None else cut[1]))  # fmt: skip
            else:
                keep &= values == cut
        if category is not None:
            keep &= columns["category"] == category
        bins = np.asarray(edges.get(name, settings["control_regions"].get(name, {}).get("edges")))
        index = np.searchsorted(bins, columns[observable][keep], side="right") - 1
        counts[name] = np.bincount(index[(index >= 0) & (index < len(bins) - 1)],
                                   minlength=len(bins) - 1)  # fmt: skip
    return counts


def test_histogram_yields_tables(run):
    """histograms/yields.md and .tex: each process's yield and MC uncertainty is its nominal
    histogram's sum (read here with uproot), the total their sum, and the data the events counted
    here in the unblinded bins: catches a table of another variation, a blinded bin counted as
    data, or a process left out of the total."""
    results, config = run
    tables = _yields_rows((results / "histograms" / "yields.md").read_text())
    latex = (results / "histograms" / "yields.tex").read_text()
    blinded = read_json(results / "histograms" / "blinding.json")
    data = _data_counts(results, config)
    assert sorted(tables) == sorted(blinded) == sorted(data)
    assert any(any(mask) for mask in blinded.values()), "something is blinded"
    with uproot.open(results / "histograms" / "histograms.root") as file:
        for channel, rows in tables.items():
            processes = sorted(name.split("/")[0] for name in file[channel].keys(recursive=True)
                               if name.endswith("/nominal;1"))  # fmt: skip
            assert sorted(set(rows) - {"total", "data"}) == processes
            totals = np.zeros(2)
            for process in processes:
                histogram = file[f"{channel}/{process}/nominal"]
                value, variance = histogram.values().sum(), histogram.variances().sum()
                cell = f"{value:.2f} ± {np.sqrt(variance):.2f}"
                assert rows[process] == cell, (channel, process)
                assert rf"${value:.2f} \pm {np.sqrt(variance):.2f}$" in latex
                totals += (value, variance)
            assert rows["total"] == f"{totals[0]:.2f} ± {np.sqrt(totals[1]):.2f}", channel
            mask = np.asarray(blinded[channel], dtype=bool)
            expected = f"{data[channel][~mask].sum():.0f}"
            if mask.any():
                expected += f" ({mask.sum()} of {len(mask)} bins blinded)"
            assert rows["data"] == expected, channel
