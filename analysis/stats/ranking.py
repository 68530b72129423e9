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
import fnmatch
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import read_json, write_json
from analysis.stats import model as model_utils
from analysis.stats.fit import (
    FitRecord,
    FitSettings,
    add_workspace_arguments,
    configure_logging,
    fit_settings,
    parse_settings,
    read_fit,
    refit,
)

log = logging.getLogger(__name__)

#: The four shifts of each parameter, in the order they are fitted.
SHIFTS = ("prefit_up", "prefit_down", "postfit_up", "postfit_down")


class Impact(NamedTuple):
    """A parameter's fit result and its four impacts on the POI."""

    parameter: str
    modifier: str
    value: float
    uncertainty: float
    prefit_uncertainty: float
    pull: float | None
    constraint: float | None
    impact_prefit_up: float
    impact_prefit_down: float
    impact_postfit_up: float
    impact_postfit_down: float
    clipped: tuple[str, ...]
    converged: bool

    @property
    def total_postfit(self) -> float:
        """The ranking key: mean absolute post-fit impact."""
        return 0.5 * (abs(self.impact_postfit_up) + abs(self.impact_postfit_down))


def ranked_labels(fit_document: Mapping[str, Any], exclude: Sequence[str] = ()) -> list[str]:
    """Parameters to rank, in model order: all but the POI, parameters fixed in the workspace and
    those matching a glob pattern of ``exclude`` (``inference.ranking.exclude``).

    Args:
        fit_document: the content of ``fit.json``.
        exclude: glob patterns of parameter labels (a bin of a staterror is ``name[i]``).
    """
    skip = {fit_document["poi"], *fit_document["fixed"]}
    return [
        label
        for label in fit_document["correlation"]["parameters"]
        if label not in skip and not any(fnmatch.fnmatchcase(label, pattern) for pattern in exclude)
    ]


def chunk_count_for(n_labels: int, chunk_size: int) -> int:
    """Number of chunks of ``chunk_size`` parameters that cover ``n_labels`` (at least one)."""
    return max(1, math.ceil(n_labels / chunk_size))


def chunk_count(
    fit_json: str | os.PathLike[str], chunk_size: int, exclude: Sequence[str] = ()
) -> int:
    """Number of ranking jobs for a nominal fit (read by the workflow after the fit checkpoint)."""
    return chunk_count_for(len(ranked_labels(read_json(fit_json), exclude)), chunk_size)


def chunk_labels(labels: Sequence[str], chunk: int, chunk_size: int) -> list[str]:
    """The parameters of one chunk (chunks cover the list in order, the last may be shorter)."""
    n_chunks = chunk_count_for(len(labels), chunk_size)
    if not 0 <= chunk < n_chunks:
        raise AnalysisError(
            f"ranking chunk {chunk} does not exist: {len(labels)} parameters in {n_chunks} "
            "chunks; rerun the ranking so the workflow recounts them"
        )
    return list(labels[chunk * chunk_size : (chunk + 1) * chunk_size])


def impacts(
    setup: model_utils.Setup, record: FitRecord, labels: Sequence[str], settings: FitSettings
) -> list[Impact]:
    """Impacts of the given parameters on the POI (``setup.pois[0]``).

    Args:
        setup: model, data and POIs.
        record: the nominal fit.
        labels: parameters to compute impacts for.
        settings: minimiser settings.

    Returns:
        One :class:`Impact` per parameter, in the given order.
    """
    model = setup.model
    poi = model.config.poi_index
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    widths = model_utils.prefit_uncertainties(model)
    centres = model_utils.constraint_centres(model)
    kinds = model_utils.modifier_types(model)
    results = []
    for label in labels:
        i = model_utils.parameter_index(model, label)
        value, post, pre = record.values[i], record.uncertainties[i], widths[i]
        shifted = {
            "prefit_up": value + pre,
            "prefit_down": value - pre,
            "postfit_up": value + post,
            "postfit_down": value - post,
        }
        deltas, clipped, converged = {}, [], True
        for shift in SHIFTS:
            target = float(np.clip(shifted[shift], bounds[i, 0], bounds[i, 1]))
            if target != shifted[shift]:
                clipped.append(shift)
            if target == value:
                # no pre-fit width (free parameter), or already at the bound: nothing moves
                deltas[shift] = 0.0
                continue
            minimum = refit(setup, record, [i], [target], settings)
            converged = converged and minimum.converged
            deltas[shift] = float(minimum.values[poi] - record.values[poi])
        constrained = not np.isnan(centres[i]) and pre > 0
        results.append(
            Impact(
                label,
                kinds[i],
                float(value),
                float(post),
                float(pre),
                float((value - centres[i]) / pre) if constrained else None,
                float(post / pre) if constrained else None,
                *(deltas[shift] for shift in SHIFTS),
                tuple(clipped),
                converged,
            )
        )
        if clipped:
            log.warning("%s: shift(s) %s clipped at the parameter's bounds", label, clipped)
        log.info(
            "%s: post-fit impact %+.4f / %+.4f", label, deltas["postfit_up"],
            deltas["postfit_down"],
        )  # fmt: skip
    return results


def impact_record(impact: Impact) -> dict[str, Any]:
    """One ranking entry as JSON (``clipped`` as a list)."""
    return {**impact._asdict(), "clipped": list(impact.clipped)}


def chunk_record(
    setup: model_utils.Setup, chunk: int, n_ranked: int, results: Sequence[Impact]
) -> dict[str, Any]:
    """The content of one chunk's output file (merged by :func:`gather`)."""
    return {
        "poi": setup.pois[0],
        "chunk": chunk,
        "n_ranked": n_ranked,
        "impacts": [impact_record(impact) for impact in results],
    }


def gather(chunks: Sequence[Mapping[str, Any]], sources: Sequence[str]) -> list[dict[str, Any]]:
    """Merge chunk outputs into the ranking, sorted by decreasing total post-fit impact.

    Args:
        chunks: the chunk documents.
        sources: their file names (for errors).

    Returns:
        The entries of ``ranking.json`` (ties broken by parameter name, for stable output).

    Raises:
        AnalysisError: chunks from different fits, or missing or duplicated parameters.
    """
    expected = {chunk["n_ranked"] for chunk in chunks}
    pois = {chunk["poi"] for chunk in chunks}
    if len(expected) != 1 or len(pois) != 1:
        raise AnalysisError(
            f"{sources[0]}: ranking chunks come from different fits; rerun the ranking"
        )
    entries = [entry for chunk in chunks for entry in chunk["impacts"]]
    names = [entry["parameter"] for entry in entries]
    if len(set(names)) != len(names) or len(names) != expected.pop():
        raise AnalysisError(
            f"{sources[0]}: ranking chunks miss or repeat parameters; rerun the ranking"
        )

    def total(entry: Mapping[str, Any]) -> float:
        return 0.5 * (abs(entry["impact_postfit_up"]) + abs(entry["impact_postfit_down"]))

    return sorted(entries, key=lambda entry: (-total(entry), entry["parameter"]))


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
    configure_logging()
    if args.command == "gather":
        chunks = [read_json(path) for path in args.chunks]
        write_json(args.output, gather(chunks, args.chunks))
        return
    if args.chunk_size < 1:
        raise AnalysisError("inference.ranking_chunk_size: must be at least 1")
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    record = read_fit(args.fit, setup)
    labels = ranked_labels(read_json(args.fit), args.exclude)
    if not labels:
        raise AnalysisError(
            f"{args.fit}: no parameter left to rank; inference.ranking.exclude "
            f"{args.exclude} matches all of them"
        )
    selected = chunk_labels(labels, args.chunk, args.chunk_size)
    results = impacts(setup, record, selected, fit_settings(settings))
    write_json(args.output, chunk_record(setup, args.chunk, len(labels), results))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
