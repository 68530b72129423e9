"""Goodness of fit of the network's input variables (``gof/gof.json``), in parallel chunks.

Before the classifier's output is trusted, every input variable (``gof.variables``, null: the
training features) and, with ``gof.pairs``, every pair of them is tested: its histogram in the
signal region (:mod:`analysis.stats.gof_histograms`) with the analysis's full systematic model
is fitted and the saturated statistic's p-value sampled with toys (:mod:`analysis.stats.gof`).
While the analysis is blinded the tests run on Asimov data (``gof.data`` null follows
``unblind``): the statistic is 0 and the p-value 1 by construction, so this checks only that
every test runs; ``gof.data: pseudo`` draws one pseudo-data set per test from the pre-fit model
instead, a closure whose p-values are uniform when the machinery is right. Neither says anything
about the data.

The workflow splits the tests into chunks of ``gof.chunk_size`` (``chunk``, one job each) and
merges them (``gather``) into ``gof.json`` with its summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from analysis.core.errors import AnalysisError, cli_main
from analysis.stats.chunks import chunk_items
from analysis.stats.cli import parse_settings
from analysis.stats.results import GofChunk, GofResults, GofTest

log = logging.getLogger(__name__)

#: What ``gof.data`` may say.
DATA_MODES = ("observed", "asimov", "pseudo")


def tests_of(variables: Sequence[str], pairs: bool) -> list[tuple[str, ...]]:
    """Every test: each variable alone, then (with ``pairs``) each pair in config order."""
    tests = [(name,) for name in variables]
    if pairs:
        tests += list(itertools.combinations(variables, 2))
    return tests


def chunk_tests(
    tests: Sequence[tuple[str, ...]], chunk: int, chunk_size: int
) -> list[tuple[str, ...]]:
    """The tests of one chunk (chunks cover the list in order, the last may be shorter)."""
    return chunk_items(tests, chunk, chunk_size, "tests", "gof target")


def run_chunk(manifest: Mapping[str, Any], settings: Mapping[str, Any], chunk: int) -> GofChunk:
    """The tests of one chunk.

    Args:
        manifest: the input files per sample (see
            :func:`analysis.stats.gof_histograms.read_samples`).
        settings: ``gof`` (``variables`` resolved, ``data`` one of :data:`DATA_MODES`),
            ``histograms``, ``workspace`` and ``inference`` config sections, and ``eras``
            (several eras: their settings with merged channels, else None).
        chunk: the chunk index.
    """
    gof = settings["gof"]
    tests = tests_of(gof["variables"], gof["pairs"])
    selected = chunk_tests(tests, chunk, gof["chunk_size"])
    samples, edges = read_inputs(manifest, settings, sorted({v for test in selected for v in test}))
    results = []
    for test in selected:
        results.append(evaluate_test(build_test(samples, edges, test, settings), test, settings))
    return GofChunk(gof["data"], chunk, len(tests), tuple(results))


def read_inputs(
    manifest: Mapping[str, Any], settings: Mapping[str, Any], variables: Sequence[str]
) -> tuple[list[Any], dict[str, Any]]:
    """The columns of ``variables`` per sample and variation, and each variable's bin edges.

    Raises:
        AnalysisError: ``gof.data`` not one of :data:`DATA_MODES`.
    """
    from analysis.stats import gof_histograms as inputs

    gof, histograms = settings["gof"], region_histograms(settings)
    if gof["data"] not in DATA_MODES:
        raise AnalysisError(f"gof.data: {gof['data']!r} is not one of {', '.join(DATA_MODES)}")
    samples = inputs.read_samples(manifest, variables, histograms)
    observed = gof["data"] == "observed"
    return samples, inputs.variable_edges(samples, variables, histograms, gof["bins"], observed)


def region_histograms(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``histograms`` section with the tests' region as its signal region: ``gof.region``
    null tests the signal region, the name of a control region its selection (the tests bin the
    variables themselves; the region's observable and edges are the analysis's)."""
    histograms, region = settings["histograms"], settings["gof"].get("region")
    if region is None:
        return histograms
    return {**histograms, "signal_region": histograms["control_regions"][region]["selection"]}


class TestModel(NamedTuple):
    """One test's model and data (:class:`analysis.stats.model.Setup`), the edges of its
    variable (a single-variable test; None for a pair) and which of its bins the model holds."""

    setup: Any
    edges: np.ndarray | None
    kept: np.ndarray


def build_test(
    samples: Sequence[Any],
    edges: Mapping[str, Any],
    test: Sequence[str],
    settings: Mapping[str, Any],
) -> TestModel:
    """The model and data of one test: its histograms and the analysis's workspace of them."""
    # imported here: the workflow imports this module to count the chunks
    import pyhf

    from analysis.stats import gof_histograms as inputs
    from analysis.stats import model as model_utils

    gof, histograms = settings["gof"], region_histograms(settings)
    observed = gof["data"] == "observed"
    per_sample, n_bins = inputs.fill_test(samples, test, edges, histograms)
    # blinded, the data of a control region are tested only where no signal hides (blinding.py)
    guard = histograms["blind_threshold"] if observed and gof.get("blinded", False) else None
    eras = settings.get("eras")
    spec, kept = inputs.workspace_of(
        per_sample, test, n_bins, histograms, settings["workspace"], observed, guard,
        eras=eras, sample_eras=None if eras is None else [sample.era for sample in samples],
    )  # fmt: skip
    # a control region may hold no signal: its test fits no signal strength
    parsed = model_utils.model_settings(settings["inference"])._replace(require_pois=False)
    setup = model_utils.build(pyhf.Workspace(spec), parsed)
    return TestModel(setup, np.asarray(edges[test[0]]) if len(test) == 1 else None, kept)


def evaluate_test(
    built: TestModel,
    test: Sequence[str],
    settings: Mapping[str, Any],
    batch: int | None = None,
    profile: bool = True,
) -> GofTest:
    """The saturated test of one test's model with its toys (``batch``: toys fitted together,
    ``profile``: staterror parameters profiled, see :func:`analysis.stats.gof.fit_toys`), and
    for a single variable its pre- and post-fit histogram."""
    from analysis.stats import gof_histograms as inputs
    from analysis.stats.gof import distribution_of, entry_of, pseudo_data, saturated_test, seed_of
    from analysis.stats.minimizer import fit_settings

    setup, gof = built.setup, settings["gof"]
    seed = seed_of(gof["seed"], test)
    data = pseudo_data(setup.model, seed) if gof["data"] == "pseudo" else setup.data
    minimizer = fit_settings(settings["inference"])
    sampled = saturated_test(setup.model, data, minimizer, gof["toys"], seed, batch, profile)
    n_bins = setup.model.config.nmaindata  # without bins nothing is predicted in
    log.info(
        "%s: %d bins, chi2 %.2f / %d, p-value %.3f (toys), %s (asymptotic), %d fallbacks",
        inputs.channel_name(test), n_bins, sampled.chi2, sampled.ndof, sampled.p_value,
        sampled.p_value_asymptotic, sampled.fallbacks,
    )  # fmt: skip
    distribution = None
    if built.edges is not None:
        distribution = distribution_of(
            setup.model, data, sampled.bestfit, built.edges, built.kept,
            gof["data"] == "observed", minimizer,
        )  # fmt: skip
    return entry_of(test, n_bins, sampled, gof["toys"], seed, distribution)


def gather(chunks: Sequence[GofChunk], sources: Sequence[str]) -> GofResults:
    """Merge the chunks, in test order, into ``gof.json`` with its summary.

    Raises:
        AnalysisError: chunks of different settings, or missing or repeated chunks.
    """
    from analysis.stats.gof import summary

    totals = {chunk.n_tests for chunk in chunks}
    modes = {chunk.data for chunk in chunks}
    if len(totals) != 1 or len(modes) != 1:
        raise AnalysisError(f"{sources[0]}: gof chunks come from different settings; rerun gof")
    ordered = sorted(chunks, key=lambda chunk: chunk.chunk)
    tests = [test for chunk in ordered for test in chunk.tests]
    indices = [chunk.chunk for chunk in ordered]
    if len(set(indices)) != len(indices) or len(tests) != totals.pop():
        raise AnalysisError(f"{sources[0]}: gof chunks miss or repeat tests; rerun gof")
    return summary(modes.pop(), tests)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Goodness of fit of the input variables.")
    commands = parser.add_subparsers(dest="command", required=True)
    chunk = commands.add_parser("chunk", help="the tests of one chunk")
    chunk.add_argument("--manifest", required=True, help="input files per sample (JSON)")
    chunk.add_argument("--settings", required=True, help="gof, histograms, workspace, ... (JSON)")
    chunk.add_argument("--chunk", type=int, required=True, help="chunk index, from 0")
    chunk.add_argument("--output", required=True)
    merge = commands.add_parser("gather", help="merge chunks into gof.json")
    merge.add_argument("chunks", nargs="+", help="chunk outputs")
    merge.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.command == "gather":
        chunks = [GofChunk.read(path) for path in args.chunks]
        result = gather(chunks, args.chunks)
        result.write(args.output)
        log.info(
            "%d tests, %.1f%% below 5%%, uniformity p-value %.3f (%s data), %d toys refitted "
            "by MINUIT", len(result.tests), 100 * result.fraction_below_5_percent,
            result.uniformity_p_value, result.data, result.fallbacks,
        )  # fmt: skip
        return
    settings = parse_settings(args.settings)
    if settings["gof"]["chunk_size"] < 1:
        raise AnalysisError("gof.chunk_size: must be at least 1")
    manifest = json.loads(args.manifest)
    run_chunk(manifest, settings, args.chunk).write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
