"""Profile-likelihood scans of the POIs (``scan_{poi}.json``, ``scan2d.json``), in parallel chunks.

At each scan point the scanned parameter(s) are held fixed and all others refitted (warm-started
from the nominal fit, see :func:`analysis.stats.minimizer.profile_start`, all points of a chunk
together, see :mod:`analysis.stats.refits`); the curve is
-2 Delta log L relative to the global minimum. The 68% and 95% intervals are where a cubic spline
through the points crosses 1 and 3.84 (one degree of freedom). Like the ranking, the points are
split into chunks (one job each) and merged by ``gather``; with two POIs a 2D grid is scanned the
same way.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.interpolate
import scipy.optimize
import scipy.stats

from analysis.core.errors import AnalysisError, cli_main
from analysis.stats import model as model_utils
from analysis.stats.chunks import chunk_items
from analysis.stats.cli import add_workspace_arguments, parse_settings
from analysis.stats.fit import read_fit
from analysis.stats.minimizer import FitSettings, fit_settings
from analysis.stats.results import FitResults, Scan2DResults, ScanChunk, ScanPoint, ScanResults

log = logging.getLogger(__name__)

#: Confidence levels of the intervals read off a 1D scan.
LEVELS = {"interval_68": scipy.stats.chi2.cdf(1.0, 1), "interval_95": 0.95}


class ScanSettings(NamedTuple):
    """Scan grid and chunking (config ``inference.scan``)."""

    points: int = 41
    points_2d: int = 15
    sigmas: float = 3.0
    chunk_size: int = 50
    ranges: Mapping[str, Sequence[float]] = {}


def scan_settings(settings: Mapping[str, Any]) -> ScanSettings:
    """The scan settings from a stage's settings (the ``scan`` entry; defaults if absent)."""
    fields = dict(settings.get("scan") or {})
    if fields.get("ranges") is None:
        fields.pop("ranges", None)
    return ScanSettings(**{key: fields[key] for key in ScanSettings._fields if key in fields})


def axis(
    setup: model_utils.Setup, record: FitResults, parameter: str, settings: ScanSettings, n: int
) -> np.ndarray:
    """The scanned values of one parameter.

    From ``settings.ranges[parameter]`` when given, else best fit +- ``settings.sigmas`` post-fit
    uncertainties, cut at the parameter's bounds.

    Raises:
        AnalysisError: unknown or fixed parameter, or a bad range.
    """
    model = setup.model
    index = model_utils.parameter_index(model, parameter, "parameter to scan")
    if not model_utils.free_mask(model)[index]:
        raise AnalysisError(f"{parameter!r} is fixed in the workspace and cannot be scanned")
    low, high = model.config.suggested_bounds()[index]
    if parameter in settings.ranges:
        start, stop = (float(value) for value in settings.ranges[parameter])
        if not low <= start < stop <= high:
            raise AnalysisError(
                f"inference.scan.ranges.{parameter}: [{start}, {stop}] must be increasing and "
                f"within the parameter's bounds [{low}, {high}]"
            )
    else:
        value, error = record.values[index], record.uncertainties[index]
        if not error > 0:
            raise AnalysisError(
                f"fit.json: {parameter!r} has no uncertainty (did the fit converge?); set "
                f"inference.scan.ranges.{parameter}"
            )
        start = max(low, value - settings.sigmas * error)
        stop = min(high, value + settings.sigmas * error)
    return np.linspace(start, stop, n)


def grid(
    setup: model_utils.Setup, record: FitResults, parameters: Sequence[str], settings: ScanSettings
) -> list[tuple[float, ...]]:
    """All points of a 1D scan, or of a 2D scan (first parameter varying slowest)."""
    if len(parameters) == 1:
        return [(float(v),) for v in axis(setup, record, parameters[0], settings, settings.points)]
    xs, ys = (axis(setup, record, p, settings, settings.points_2d) for p in parameters)
    return [(float(x), float(y)) for x in xs for y in ys]


def profile(
    setup: model_utils.Setup,
    record: FitResults,
    parameters: Sequence[str],
    points: Sequence[Sequence[float]],
    settings: FitSettings,
) -> list[ScanPoint]:
    """Refit at each point with ``parameters`` held at its values (all points together, see
    :func:`analysis.stats.refits.refits`).

    Args:
        setup: model, data and POIs.
        record: the nominal fit (start of every refit).
        parameters: the scanned parameters.
        points: their values, one tuple per point.
        settings: minimiser settings.

    Returns:
        One :class:`ScanPoint` per point.
    """
    # imported here: the workflow imports this module to count the chunks, without torch
    from analysis.stats.refits import Request, refits

    indices = tuple(model_utils.parameter_index(setup.model, name) for name in parameters)
    requests = [Request(indices, tuple(float(value) for value in point)) for point in points]
    outcome = refits(setup, record, requests, settings)
    results = []
    for request, minimum in zip(requests, outcome.minima, strict=True):
        results.append(ScanPoint(request.targets, minimum.twice_nll, minimum.converged))
        log.info("%s = %s: -2 log L = %.6f", parameters, request.targets, minimum.twice_nll)
    return results


def interval(
    values: Sequence[float], delta: Sequence[float], bestfit: float, level: float
) -> list[float | None]:
    """The interval where the profile curve stays below the chi2 quantile of ``level``.

    A cubic spline through the points (and the best fit, at 0) is solved for the crossings left
    and right of the best fit; a side that does not cross within the scanned range is None.

    Args:
        values: scanned values (increasing).
        delta: -2 Delta log L at each value.
        bestfit: the global best-fit value.
        level: confidence level, e.g. 0.95.

    Returns:
        ``[low, high]``.
    """
    threshold = float(scipy.stats.chi2.ppf(level, 1))
    x = np.asarray(values, dtype=float)
    y = np.asarray(delta, dtype=float)
    if x[0] < bestfit < x[-1] and not np.any(np.isclose(x, bestfit, rtol=0, atol=1e-9)):
        order = np.argsort(np.append(x, bestfit))
        x, y = np.append(x, bestfit)[order], np.append(y, 0.0)[order]
    spline = scipy.interpolate.CubicSpline(x, y)
    centre = int(np.argmin(y))
    ends: list[float | None] = []
    for direction in (-1, 1):
        crossing = None
        stop = -1 if direction < 0 else len(x)
        for j in range(centre, stop - direction, direction):
            a, b = x[j], x[j + direction]
            if (spline(a) - threshold) * (spline(b) - threshold) <= 0:
                root = scipy.optimize.brentq(lambda t: spline(t) - threshold, min(a, b), max(a, b))
                crossing = float(root)
                break
        ends.append(crossing)
    return ends


def gather_1d(chunks: Sequence[ScanChunk], record: FitResults, parameter: str) -> ScanResults:
    """Merge chunk outputs of a 1D scan into ``scan_{poi}.json``."""
    points = _merged_points(chunks, [parameter])
    value, error = record.bestfit(parameter)
    minimum = min(record.twice_nll, min(point.twice_nll for point in points))
    values = tuple(point.values[0] for point in points)
    delta = tuple(point.twice_nll - minimum for point in points)
    if minimum < record.twice_nll:
        log.warning("a scan point lies below the nominal minimum: the nominal fit was not at it")
    return ScanResults(
        poi=parameter,
        bestfit=(value, error),
        values=values,
        delta_twice_nll=delta,
        converged=all(point.converged for point in points),
        interval_68=tuple(interval(values, delta, value, LEVELS["interval_68"])),
        interval_95=tuple(interval(values, delta, value, LEVELS["interval_95"])),
    )


def gather_2d(
    chunks: Sequence[ScanChunk], record: FitResults, parameters: Sequence[str]
) -> Scan2DResults:
    """Merge the chunks of a 2D scan into ``scan2d.json`` (delta_twice_nll[i][j] at x_i, y_j)."""
    points = _merged_points(chunks, parameters)
    xs = sorted({point.values[0] for point in points})
    ys = sorted({point.values[1] for point in points})
    if len(xs) * len(ys) != len(points):
        raise AnalysisError("2D scan chunks do not form a grid; rerun the scan")
    minimum = min(record.twice_nll, min(point.twice_nll for point in points))
    surface = np.zeros((len(xs), len(ys)))
    for point in points:
        x, y = point.values
        surface[xs.index(x), ys.index(y)] = point.twice_nll - minimum
    return Scan2DResults(
        pois=tuple(parameters),
        x=tuple(xs),
        y=tuple(ys),
        delta_twice_nll=surface,
        bestfit={name: record.bestfit(name) for name in parameters},
        converged=all(point.converged for point in points),
    )


def _merged_points(chunks: Sequence[ScanChunk], parameters: Sequence[str]) -> list[ScanPoint]:
    """All points of the chunks, checked to be one complete scan of ``parameters``."""
    totals = {chunk.n_points for chunk in chunks}
    if any(list(chunk.parameters) != list(parameters) for chunk in chunks) or len(totals) != 1:
        raise AnalysisError(f"scan chunks of {parameters} come from different scans; rerun it")
    ordered = sorted(chunks, key=lambda chunk: chunk.chunk)
    points = [point for chunk in ordered for point in chunk.points]
    if len(points) != totals.pop():
        raise AnalysisError(f"scan chunks of {parameters} miss or repeat points; rerun the scan")
    return points


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Profile-likelihood scans, in chunks.")
    commands = parser.add_subparsers(dest="command", required=True)
    chunk = commands.add_parser("chunk", help="profile one chunk of scan points")
    merge = commands.add_parser("gather", help="merge chunks into scan_{poi}.json / scan2d.json")
    for command in (chunk, merge):
        add_workspace_arguments(command)
        command.add_argument("--fit", required=True, help="fit.json of the nominal fit")
        command.add_argument(
            "--parameters", nargs="+", required=True, help="one POI (1D) or two (2D scan)"
        )
        command.add_argument("--output", required=True)
    chunk.add_argument("--chunk", type=int, required=True, help="chunk index, from 0")
    merge.add_argument("--chunks", nargs="+", required=True, help="chunk outputs")
    args = parser.parse_args(argv)
    if len(args.parameters) not in (1, 2):
        raise AnalysisError("--parameters: scan one parameter (1D) or two (2D)")
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    record = read_fit(args.fit, setup)
    if args.command == "gather":
        chunks = [ScanChunk.read(path) for path in args.chunks]
        if len(args.parameters) == 1:
            gather_1d(chunks, record, args.parameters[0]).write(args.output)
        else:
            gather_2d(chunks, record, args.parameters).write(args.output)
        return
    scan = scan_settings(settings)
    points = grid(setup, record, args.parameters, scan)
    selected = chunk_items(points, args.chunk, scan.chunk_size, "points", "scan")
    results = profile(setup, record, args.parameters, selected, fit_settings(settings))
    ScanChunk(tuple(args.parameters), args.chunk, len(points), tuple(results)).write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
