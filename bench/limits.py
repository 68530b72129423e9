"""Benchmark of the CLs upper limits, as a ratio to pyhf's own root finding run alongside.

    python bench/limits.py [--workspace tests/data/workspaces/large.json]

Times ``analysis.stats.limits.upper_limit`` (observed, median expected and the four band edges, as
the ``limits`` stage computes them) against ``pyhf.infer.intervals.upper_limits.toms748_scan`` on
the same model and data with the same MINUIT tolerance (pyhf refits the unconditional minimum and
regenerates the Asimov data at every step). Prints both wall times, their ratio, the number of fits
ours made (one unconditional MIGRAD + HESSE fit, then batched Newton refits) and the largest
difference between the two sets of limits.

Only ratios measured in the same run are meaningful; absolute times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one BLAS thread per process, as Snakemake sets for a one-thread job; the same for the reference
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import pyhf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.stats import limits  # noqa: E402
from analysis.stats import model as model_utils  # noqa: E402
from analysis.stats.minimizer import FitSettings  # noqa: E402


def our_limits(setup: model_utils.Setup, settings: FitSettings) -> tuple[float, list, str]:
    """Wall time, limits (observed, then expected from -2 to +2 sigma) and the fits made: the
    unconditional MIGRAD + HESSE fit and the conditional refits (those MINUIT redid among them).
    The time includes building the batched likelihood, as in a ``limits`` job."""
    tally = limits.Tally()
    start = time.perf_counter()
    result = limits.upper_limit(setup, setup.pois[0], settings, tally=tally)
    elapsed = time.perf_counter() - start
    fits = f"1 MIGRAD + HESSE fit, {tally.refits} conditional refits, {tally.fallbacks} by MINUIT"
    return elapsed, [result.observed, *result.expected_band], fits


def pyhf_limits(setup: model_utils.Setup, tolerance: float) -> tuple[float, list]:
    """Wall time and limits of pyhf's toms748 scan (qtilde, POI between 0 and its upper bound)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=tolerance))
    bounds = setup.model.config.suggested_bounds()
    index = setup.model.config.poi_index
    bounds[index] = (0.0, bounds[index][1])
    start = time.perf_counter()
    observed, expected = pyhf.infer.intervals.upper_limits.toms748_scan(
        setup.data, setup.model, 0.0, bounds[index][1], rtol=1e-6, par_bounds=bounds,
        test_stat="qtilde",
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    return elapsed, [float(observed), *np.asarray(expected, dtype=float)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO / "tests/data/workspaces/large.json"))
    args = parser.parse_args()
    settings = FitSettings()
    setup = model_utils.setup_from_files(Path(args.workspace), {"fit": settings._asdict()})
    print(f"workspace {Path(args.workspace).name}: {setup.model.config.npars} parameters")
    ours_time, ours, fits = our_limits(setup, settings)
    print(f"ours: {ours_time:.1f} s ({fits})")
    try:
        reference_time, reference = pyhf_limits(setup, settings.tolerance)
    except pyhf.exceptions.FailedMinimization as err:
        # toms748 brackets [0, upper bound]: a fit far out at the bound may fail
        print(f"pyhf toms748_scan failed: {str(err).splitlines()[0]}")
        return
    names = ["observed", "-2 sigma", "-1 sigma", "expected", "+1 sigma", "+2 sigma"]
    for name, a, b in zip(names, ours, reference, strict=True):
        print(f"  {name:9s} ours {a:.6f}  pyhf {b:.6f}")
    print(f"pyhf toms748_scan: {reference_time:.1f} s")
    print(f"ratio ours/pyhf: {ours_time / reference_time:.3f}")
    print(
        f"largest difference: {max(abs(a - b) for a, b in zip(ours, reference, strict=True)):.2e}"
    )


if __name__ == "__main__":
    main()
