"""Impacts of the nuisance parameters on the POI (``ranking.json``), computed in parallel chunks.

The standard definition (cabinetry's ``fit.ranking``, CMS combine's impacts): for each parameter,
refit with it held at theta_hat +- its post-fit uncertainty and at theta_hat +- its pre-fit
uncertainty, everything else floating; the impact is the change of the POI from its nominal best
fit. A shifted value outside the parameter's bounds is moved onto the bound and flagged in
``clipped``. Free parameters (other normfactors) have no pre-fit width, so no pre-fit impact.

The workflow splits the ranked parameters into chunks (``chunk``, one job each) and merges them
(``gather``) into the list sorted by decreasing total post-fit impact, (|up| + |down|) / 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from analysis.core.errors import AnalysisError, cli_main
from analysis.stats import model as model_utils
from analysis.stats.chunks import chunk_count as chunk_count_for
from analysis.stats.chunks import chunk_items
from analysis.stats.cli import add_workspace_arguments, parse_settings
from analysis.stats.fit import read_fit
from analysis.stats.minimizer import FitSettings, Minimum, fit_settings
from analysis.stats.results import FitResults, Impact, RankingChunk, RankingResults

log = logging.getLogger(__name__)

#: The four shifts of each parameter, in the order they are fitted.
SHIFTS = ("prefit_up", "prefit_down", "postfit_up", "postfit_down")


class _Priors(NamedTuple):
    """What the model says of every parameter before the fit."""

    widths: np.ndarray
    centres: np.ndarray
    kinds: list[str]
    bounds: np.ndarray


def ranked_labels(fit: FitResults, exclude: Sequence[str] = ()) -> list[str]:
    """Parameters to rank, in model order: all but the POI, parameters fixed in the workspace and
    those matching a glob pattern of ``exclude`` (``inference.ranking.exclude``).

    Args:
        fit: the nominal fit.
        exclude: glob patterns of parameter labels (a bin of a staterror is ``name[i]``).
    """
    skip = {fit.poi, *fit.fixed}
    return [
        label
        for label in fit.labels
        if label not in skip and not model_utils.matches_any(label, exclude)
    ]


def chunk_count(
    fit_json: str | os.PathLike[str], chunk_size: int, exclude: Sequence[str] = ()
) -> int:
    """Number of ranking jobs for a nominal fit (read by the workflow after the fit checkpoint)."""
    return chunk_count_for(len(ranked_labels(FitResults.read(fit_json), exclude)), chunk_size)


def chunk_labels(labels: Sequence[str], chunk: int, chunk_size: int) -> list[str]:
    """The parameters of one chunk (chunks cover the list in order, the last may be shorter)."""
    return chunk_items(labels, chunk, chunk_size, "parameters", "ranking")


class Ranked(NamedTuple):
    """Impacts of some parameters, and how many refits they took and how many of those the
    batched refits left to MINUIT (see :mod:`analysis.stats.refits`)."""

    impacts: tuple[Impact, ...]
    refits: int
    fallbacks: int


class _Shifts(NamedTuple):
    """One parameter's shifted values (moved onto its bounds where beyond them)."""

    index: int
    targets: dict[str, float]
    clipped: tuple[str, ...]


def impacts(
    setup: model_utils.Setup, record: FitResults, labels: Sequence[str], settings: FitSettings
) -> Ranked:
    """Impacts of the given parameters on the POI (``setup.pois[0]``).

    All refits of all parameters are solved together (:func:`analysis.stats.refits.refits`).

    Args:
        setup: model, data and POIs.
        record: the nominal fit.
        labels: parameters to compute impacts for.
        settings: minimiser settings.

    Returns:
        One :class:`Impact` per parameter, in the given order, and the refit counts.
    """
    # imported here: the workflow imports this module to count the chunks, without torch
    from analysis.stats.refits import Request, refits

    model = setup.model
    priors = _Priors(
        model_utils.prefit_uncertainties(model),
        model_utils.constraint_centres(model),
        model_utils.modifier_types(model),
        np.asarray(model.config.suggested_bounds(), dtype=float),
    )
    shifts = [
        _shifts(record, model_utils.parameter_index(model, label), priors) for label in labels
    ]
    requests = [
        (n, shift, Request((entry.index,), (target,)))
        for n, entry in enumerate(shifts)
        for shift, target in entry.targets.items()
        if target != record.values[entry.index]  # no pre-fit width, or at the bound: no refit
    ]
    outcome = refits(setup, record, [request for _, _, request in requests], settings)
    minima: list[dict[str, Minimum]] = [{} for _ in labels]
    for (n, shift, _), minimum in zip(requests, outcome.minima, strict=True):
        minima[n][shift] = minimum
    results = tuple(
        _impact(setup, record, label, entry, found, priors)
        for label, entry, found in zip(labels, shifts, minima, strict=True)
    )
    return Ranked(results, len(requests), outcome.fallbacks)


def _shifts(record: FitResults, index: int, priors: _Priors) -> _Shifts:
    """The four shifted values of a parameter, clipped at its bounds, and which were clipped."""
    value, post, pre = record.values[index], record.uncertainties[index], priors.widths[index]
    shifted = {
        "prefit_up": value + pre,
        "prefit_down": value - pre,
        "postfit_up": value + post,
        "postfit_down": value - post,
    }
    lower, upper = priors.bounds[index]
    targets = {shift: float(np.clip(shifted[shift], lower, upper)) for shift in SHIFTS}
    clipped = tuple(shift for shift in SHIFTS if targets[shift] != shifted[shift])
    return _Shifts(index, targets, clipped)


def _impact(
    setup: model_utils.Setup,
    record: FitResults,
    label: str,
    shifts: _Shifts,
    minima: dict[str, Minimum],
    priors: _Priors,
) -> Impact:
    """One parameter's entry of the ranking from its refits (a shift without a refit moved
    nothing: impact 0)."""
    i, poi = shifts.index, setup.model.config.poi_index
    value, post, pre = record.values[i], record.uncertainties[i], priors.widths[i]
    deltas = {
        shift: float(minima[shift].values[poi] - record.values[poi]) if shift in minima else 0.0
        for shift in SHIFTS
    }
    centre = priors.centres[i]
    constrained = not np.isnan(centre) and pre > 0
    if shifts.clipped:
        log.warning(
            "%s: shift(s) %s clipped at the parameter's bounds", label, list(shifts.clipped)
        )
    log.info(
        "%s: post-fit impact %+.4f / %+.4f", label, deltas["postfit_up"], deltas["postfit_down"]
    )
    return Impact(
        label,
        priors.kinds[i],
        float(value),
        float(post),
        float(pre),
        float((value - centre) / pre) if constrained else None,
        float(post / pre) if constrained else None,
        *(deltas[shift] for shift in SHIFTS),
        shifts.clipped,
        all(minimum.converged for minimum in minima.values()),
    )


def gather(chunks: Sequence[RankingChunk], sources: Sequence[str]) -> RankingResults:
    """Merge chunk outputs into the ranking, sorted by decreasing total post-fit impact.

    Args:
        chunks: the chunks.
        sources: their file names (for errors).

    Returns:
        The ranking (ties broken by parameter name, for stable output).

    Raises:
        AnalysisError: chunks from different fits, or missing or duplicated parameters.
    """
    expected = {chunk.n_ranked for chunk in chunks}
    pois = {chunk.poi for chunk in chunks}
    if len(expected) != 1 or len(pois) != 1:
        raise AnalysisError(
            f"{sources[0]}: ranking chunks come from different fits; rerun the ranking"
        )
    entries = [impact for chunk in chunks for impact in chunk.impacts]
    names = [impact.parameter for impact in entries]
    if len(set(names)) != len(names) or len(names) != expected.pop():
        raise AnalysisError(
            f"{sources[0]}: ranking chunks miss or repeat parameters; rerun the ranking"
        )
    return RankingResults(
        tuple(sorted(entries, key=lambda impact: (-impact.total_postfit, impact.parameter)))
    )


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Impacts ranking, in chunks (ranking.json).")
    commands = parser.add_subparsers(dest="command", required=True)
    chunk = commands.add_parser("chunk", help="impacts of one chunk of parameters")
    add_workspace_arguments(chunk)
    chunk.add_argument("--fit", required=True, help="fit.json of the nominal fit")
    chunk.add_argument("--chunk", type=int, required=True, help="chunk index, from 0")
    chunk.add_argument("--chunk-size", type=int, required=True, help="parameters per chunk")
    chunk.add_argument(
        "--exclude", nargs="*", default=[], help="glob patterns of parameters not to rank"
    )
    chunk.add_argument("--output", required=True)
    merge = commands.add_parser("gather", help="merge chunks into ranking.json")
    merge.add_argument("chunks", nargs="+", help="chunk outputs")
    merge.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.command == "gather":
        chunks = [RankingChunk.read(path) for path in args.chunks]
        gather(chunks, args.chunks).write(args.output)
        return
    if args.chunk_size < 1:
        raise AnalysisError("inference.ranking.chunk_size: must be at least 1")
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    record = read_fit(args.fit, setup)
    labels = ranked_labels(record, args.exclude)
    if not labels:
        raise AnalysisError(
            f"{args.fit}: no parameter left to rank; inference.ranking.exclude "
            f"{args.exclude} matches all of them"
        )
    selected = chunk_labels(labels, args.chunk, args.chunk_size)
    ranked = impacts(setup, record, selected, fit_settings(settings))
    RankingChunk(
        setup.pois[0], args.chunk, len(labels), ranked.impacts, ranked.refits, ranked.fallbacks
    ).write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
