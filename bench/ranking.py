"""Benchmark of the impacts ranking and of one MLE fit, as ratios to references run alongside.

    python bench/ranking.py [--workspace tests/data/workspaces/large.json] [--jobs 2]

1. Ranking, the nominal fit plus every parameter's four refits, against ``cabinetry.fit.fit`` plus
   ``cabinetry.fit.ranking`` on the same workspace with the same MINUIT tolerance and strategy
   (one process):

   - ours in one process (like for like): ``analysis.stats.fit.fit`` and ``ranking.impacts`` of
     every parameter, with the batched Newton refits (``inference.refits.batched``) and, for
     comparison, with MINUIT for every refit;
   - ours as the workflow runs it: the ``ranking_chunk`` jobs (``--jobs`` at a time, each a
     ``python -m analysis.stats.ranking chunk`` process as Snakemake starts it, chunks of
     ``--chunk-size`` parameters, by default all in one job) and the gather; the processes'
     start-up (Python, pyhf, torch) included.

   Prints the wall times, the ratios cabinetry/ours, the refits that fell back to MINUIT, and the
   largest difference of each ranking's impacts to a tight reference: cabinetry's ranking with
   MINUIT at tolerance 1e-6 (skip it with ``--no-reference``).
2. One MLE fit with uncertainties (MIGRAD + HESSE): fits per second of ``analysis.stats.fit.fit``
   against ``pyhf.infer.mle.fit(..., return_uncertainties=True)`` with pyhf's minuit optimizer.

Only ratios measured in the same run are meaningful; absolute times depend on the machine's load."""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

# one BLAS thread per process, as Snakemake sets for a one-thread job; the same for the reference
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import cabinetry  # noqa: E402
import numpy as np  # noqa: E402
import pyhf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.stats import fit as fit_module  # noqa: E402
from analysis.stats import model as model_utils  # noqa: E402
from analysis.stats import ranking  # noqa: E402
from analysis.stats.minimizer import FitSettings  # noqa: E402
from analysis.stats.refits import refits  # noqa: E402, F401 (imports torch before the timings)
from analysis.stats.results import FitResults, RankingChunk, RankingResults  # noqa: E402

#: A ranking as {parameter: {shift: impact on the POI}}.
Impacts = dict[str, dict[str, float]]
SHIFTS = ("prefit_up", "prefit_down", "postfit_up", "postfit_down")
#: MINUIT tolerance of the tight reference ranking (cabinetry's default is 0.1).
TIGHT_TOLERANCE = 1e-6


def as_impacts(entries) -> Impacts:
    """Our ranking entries as {parameter: {shift: impact}}."""
    return {e.parameter: {s: getattr(e, f"impact_{s}") for s in SHIFTS} for e in entries}


class Timed(NamedTuple):
    """A ranking's wall and CPU time (this process and its children), impacts and fallbacks."""

    wall: float
    cpu: float
    impacts: Impacts
    fallbacks: int


def cpu_time() -> float:
    """CPU time of this process and its finished children (robust to a loaded machine)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def ours_in_process(setup: model_utils.Setup, settings: FitSettings) -> Timed:
    """Our nominal fit and full ranking in this process."""
    wall, cpu = time.perf_counter(), cpu_time()
    record = fit_module.fit(setup, settings)
    ranked = ranking.impacts(setup, record, ranking.ranked_labels(record), settings)
    impacts = as_impacts(ranked.impacts)
    return Timed(time.perf_counter() - wall, cpu_time() - cpu, impacts, ranked.fallbacks)


def ours_as_jobs(workspace: Path, settings: dict, jobs: int, chunk_size: int, tmp: Path) -> Timed:
    """The nominal fit and its ranking as the workflow runs them (chunk processes, ``jobs`` at a
    time, then the gather)."""
    start, cpu = time.perf_counter(), cpu_time()
    setup = model_utils.setup_from_files(workspace, settings)
    fit_json = tmp / "fit.json"
    fit_module.fit(setup, FitSettings()).write(fit_json)
    labels = ranking.ranked_labels(FitResults.read(fit_json))
    n_chunks = ranking.chunk_count_for(len(labels), chunk_size)
    common = ["--workspace", str(workspace), "--settings", json.dumps(settings)]
    outputs = [str(tmp / f"chunk_{chunk}.json") for chunk in range(n_chunks)]
    pending, running = list(range(n_chunks)), []
    while pending or running:
        while pending and len(running) < jobs:
            chunk = pending.pop(0)
            command = [sys.executable, "-m", "analysis.stats.ranking", "chunk", *common]
            command += ["--fit", str(fit_json), "--chunk", str(chunk)]
            command += ["--chunk-size", str(chunk_size), "--output", outputs[chunk]]
            running.append(subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL))
        time.sleep(0.01)
        for process in [p for p in running if p.poll() is not None]:
            if process.returncode:
                raise SystemExit(f"a ranking chunk failed: {process.args}")
            running.remove(process)
    merged = tmp / "ranking.json"
    command = [sys.executable, "-m", "analysis.stats.ranking", "gather", *outputs]
    subprocess.run([*command, "--output", str(merged)], cwd=REPO, check=True)
    elapsed, used = time.perf_counter() - start, cpu_time() - cpu
    fallbacks = sum(RankingChunk.read(output).fallbacks for output in outputs)
    return Timed(elapsed, used, as_impacts(RankingResults.read(merged).impacts), fallbacks)


def cabinetry_ranking(setup: model_utils.Setup, tolerance: float) -> Timed:
    """cabinetry's nominal fit plus ranking (one process)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=tolerance))
    start, cpu = time.perf_counter(), cpu_time()
    fit_results = cabinetry.fit.fit(setup.model, setup.data, tolerance=tolerance)
    result = cabinetry.fit.ranking(
        setup.model, setup.data, fit_results=fit_results, tolerance=tolerance
    )
    elapsed, used = time.perf_counter() - start, cpu_time() - cpu
    columns = (result.prefit_up, result.prefit_down, result.postfit_up, result.postfit_down)
    impacts = {
        label: {shift: float(values[i]) for shift, values in zip(SHIFTS, columns, strict=True)}
        for i, label in enumerate(result.labels)
    }
    return Timed(elapsed, used, impacts, 0)


def largest_difference(ours: Impacts, reference: Impacts) -> float:
    """Largest absolute difference between two rankings' impacts on the POI."""
    return max(
        abs(ours[label][shift] - values[shift])
        for label, values in reference.items()
        for shift in SHIFTS
    )


def fits_per_second(setup: model_utils.Setup, settings: FitSettings, repeat: int):
    """(ours, pyhf) fits per second of one MLE fit with uncertainties."""
    start = time.perf_counter()
    for _ in range(repeat):
        ours = fit_module.fit(setup, settings)
    ours_rate = repeat / (time.perf_counter() - start)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=settings.tolerance))
    start = time.perf_counter()
    for _ in range(repeat):
        reference = pyhf.infer.mle.fit(setup.data, setup.model, return_uncertainties=True)
    pyhf_rate = repeat / (time.perf_counter() - start)
    difference = float(np.max(np.abs(ours.values - np.asarray(reference)[:, 0])))
    return ours_rate, pyhf_rate, difference


def rankings(args: argparse.Namespace, setup: model_utils.Setup) -> None:
    """Time and compare the rankings (part 1 of the module's docstring)."""
    settings = FitSettings()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = ours_as_jobs(args.workspace, {}, args.jobs, args.chunk_size, Path(tmp))
    lines = {
        "ours, one process, batched refits": ours_in_process(setup, settings),
        "ours, one process, MINUIT refits": ours_in_process(
            setup, settings._replace(batched_refits=False)
        ),
        f"ours, chunk jobs ({args.jobs} at a time)": jobs,
        "cabinetry.fit.fit + ranking": cabinetry_ranking(setup, settings.tolerance),
    }
    cabinetry_run = lines["cabinetry.fit.fit + ranking"]
    # The tight reference: cabinetry again, with every fit converged 1e5 times tighter.
    reference = None if args.no_reference else cabinetry_ranking(setup, TIGHT_TOLERANCE).impacts
    print(f"ranking of {len(cabinetry_run.impacts)} parameters (fit + 4 refits each), wall and CPU")
    print("time, ratio cabinetry/ours of both, refits left to MINUIT, largest impact difference")
    print("to cabinetry and to the tight reference:")
    for name, run in lines.items():
        text = f"  {name:36s} {run.wall:7.2f} s {run.cpu:7.2f} s CPU  ratios"
        text += f" {cabinetry_run.wall / run.wall:6.1f} {cabinetry_run.cpu / run.cpu:6.1f}"
        text += f"  fallbacks {run.fallbacks:3d}"
        text += f"  {largest_difference(run.impacts, cabinetry_run.impacts):.1e}"
        if reference is not None:
            text += f"  {largest_difference(run.impacts, reference):.1e}"
        print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=REPO / "tests/data/workspaces/large.json")
    parser.add_argument("--jobs", type=int, default=2, help="ranking jobs run at a time")
    parser.add_argument("--chunk-size", type=int, default=100, help="parameters per job")
    parser.add_argument("--repeat", type=int, default=10, help="fits timed for fits per second")
    parser.add_argument("--no-reference", action="store_true", help="skip the tight reference")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    args.workspace = args.workspace.resolve()
    setup = model_utils.setup_from_files(args.workspace, {})
    print(f"workspace {args.workspace.name}: {setup.model.config.npars} parameters")
    rankings(args, setup)
    ours_rate, pyhf_rate, difference = fits_per_second(setup, FitSettings(), args.repeat)
    print(
        f"one MLE fit with uncertainties: ours {ours_rate:.2f} fits/s, pyhf.infer.mle.fit "
        f"{pyhf_rate:.2f} fits/s; ratio ours/pyhf {ours_rate / pyhf_rate:.2f}; largest "
        f"best-fit difference {difference:.1e}"
    )


if __name__ == "__main__":
    main()
