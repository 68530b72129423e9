"""Benchmark of the impacts ranking and of one MLE fit, as ratios to references run alongside.

    python bench/ranking.py [--workspace tests/data/workspaces/large.json] [--jobs 2]

1. Ranking: the nominal fit and our whole ranking (the workflow's ``ranking_chunk`` jobs,
   ``--jobs`` at a time, each a ``python -m analysis.stats.ranking chunk`` process as Snakemake
   starts it, then the gather) against
   ``cabinetry.fit.fit`` plus ``cabinetry.fit.ranking`` on the same workspace, with the same MINUIT
   tolerance.
   Prints both wall times, their ratio and the largest difference between the impacts.
2. One MLE fit with uncertainties (MIGRAD + HESSE): fits per second of ``analysis.stats.fit.fit``
   against ``pyhf.infer.mle.fit(..., return_uncertainties=True)`` with pyhf's minuit optimizer.

Only ratios measured in the same run are meaningful; absolute times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
from analysis.stats.minimizer import FitSettings, fit_settings  # noqa: E402
from analysis.stats.results import FitResults, Impact, RankingResults  # noqa: E402


def our_ranking(
    workspace: Path, settings: dict, jobs: int, tmp: Path
) -> tuple[float, tuple[Impact, ...]]:
    """Wall time of the nominal fit and its ranking as the workflow runs them, and the ranking."""
    start = time.perf_counter()
    setup = model_utils.setup_from_files(workspace, settings)
    fit_json = tmp / "fit.json"
    fit_module.fit(setup, fit_settings(settings)).write(fit_json)
    n_ranked = len(ranking.ranked_labels(FitResults.read(fit_json)))
    chunk_size = math.ceil(n_ranked / jobs)
    n_chunks = ranking.chunk_count_for(n_ranked, chunk_size)
    common = ["--workspace", str(workspace), "--settings", json.dumps(settings)]
    pending = list(range(n_chunks))
    running: list[subprocess.Popen] = []
    outputs = []
    while pending or running:
        while pending and len(running) < jobs:
            chunk = pending.pop(0)
            output = tmp / f"chunk_{chunk}.json"
            outputs.append(str(output))
            command = [sys.executable, "-m", "analysis.stats.ranking", "chunk", *common]
            command += ["--fit", str(fit_json), "--chunk", str(chunk)]
            command += ["--chunk-size", str(chunk_size), "--output", str(output)]
            running.append(subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL))
        time.sleep(0.01)
        for process in [p for p in running if p.poll() is not None]:
            if process.returncode:
                raise SystemExit(f"a ranking chunk failed: {process.args}")
            running.remove(process)
    merged = tmp / "ranking.json"
    subprocess.run(
        [sys.executable, "-m", "analysis.stats.ranking", "gather", *outputs]
        + ["--output", str(merged)],
        cwd=REPO,
        check=True,
    )
    return time.perf_counter() - start, RankingResults.read(merged).impacts


def cabinetry_ranking(setup: model_utils.Setup, tolerance: float) -> tuple[float, object]:
    """Wall time of cabinetry's nominal fit plus ranking (one process), and its result."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=tolerance))
    start = time.perf_counter()
    fit_results = cabinetry.fit.fit(setup.model, setup.data, tolerance=tolerance)
    result = cabinetry.fit.ranking(
        setup.model, setup.data, fit_results=fit_results, tolerance=tolerance
    )
    return time.perf_counter() - start, result


def largest_difference(ours: tuple[Impact, ...], reference) -> float:
    """Largest absolute difference between the two rankings' impacts on the POI."""
    by_name = {entry.parameter: entry for entry in ours}
    worst = 0.0
    for i, label in enumerate(reference.labels):
        for key, values in (
            ("impact_prefit_up", reference.prefit_up),
            ("impact_prefit_down", reference.prefit_down),
            ("impact_postfit_up", reference.postfit_up),
            ("impact_postfit_down", reference.postfit_down),
        ):
            worst = max(worst, abs(getattr(by_name[label], key) - values[i]))
    return worst


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO / "tests/data/workspaces/large.json"))
    parser.add_argument("--jobs", type=int, default=2, help="ranking jobs run at a time")
    parser.add_argument("--repeat", type=int, default=10, help="fits timed for fits per second")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    workspace = Path(args.workspace).resolve()
    settings = {"fit": FitSettings()._asdict()}
    tolerance = settings["fit"]["tolerance"]
    setup = model_utils.setup_from_files(workspace, settings)
    print(f"workspace {workspace.name}: {setup.model.config.npars} parameters")

    with tempfile.TemporaryDirectory() as tmp:
        ours_time, ours = our_ranking(workspace, settings, args.jobs, Path(tmp))
    reference_time, reference = cabinetry_ranking(setup, tolerance)
    print(
        f"ranking of {len(ours)} parameters: ours {ours_time:.2f} s ({args.jobs} jobs), "
        f"cabinetry.fit.ranking {reference_time:.2f} s; ratio cabinetry/ours "
        f"{reference_time / ours_time:.1f}; largest impact difference "
        f"{largest_difference(ours, reference):.1e}"
    )
    ours_rate, pyhf_rate, difference = fits_per_second(setup, FitSettings(), args.repeat)
    print(
        f"one MLE fit with uncertainties: ours {ours_rate:.2f} fits/s, pyhf.infer.mle.fit "
        f"{pyhf_rate:.2f} fits/s; ratio ours/pyhf {ours_rate / pyhf_rate:.2f}; largest "
        f"best-fit difference {difference:.1e}"
    )


if __name__ == "__main__":
    main()
