"""Cost of the input-variable goodness-of-fit tests (``snakemake gof``) and the gain of fitting
their toys together, measured on a toy run.

    python bench/gof.py --results RESULTS [--configfile CONFIG] [--tests 3] [--compare-toys 20]
                        [--pairs-only]

RESULTS holds a toy run's skims, friends and scores (``snakemake train`` and the score injection,
e.g. ``snakemake workspace`` with the tiny toy config of ``tests/conftest.py``); CONFIG is the
configfile it ran with, layered on ``config/config.yaml`` like ``--configfile`` (the defaults of
``gof`` apply unless it sets them). Every test runs on pseudo-data drawn from its pre-fit model
(``gof.data: pseudo``): on the Asimov data of a blinded analysis every toy would start at its
own minimum's neighbourhood only by chance, and the fits would do less work than on data.

1. ``--tests`` single variables and ``--tests`` pairs, spread evenly over the default tests
   (every training feature and every pair of them), each built (histograms, the analysis's
   workspace, model) and run with ``gof.toys`` toys fitted together: CPU seconds per test.
2. The same tests with ``--compare-toys`` toys fitted together and one at a time (batch 1: one
   likelihood and one Newton minimisation per toy, as before the toys were batched): the ratio
   of their CPU times, on the same toys.
3. The same tests with ``--compare-toys`` toys fitted without profiling the staterror parameters
   (Newton steps on every parameter, as before :mod:`analysis.stats.profiled`): CPU per toy of
   both and their ratio, and the toys each left to MINUIT.
4. The default run extrapolated: reading the inputs once per job (``gof.chunk_size`` tests, at
   the cost of reading the timed tests' variables) plus every single-variable and pair test at
   the measured mean cost of its kind, in CPU hours and in wall time on 2 cores, with and
   without ``gof.pairs``.

``--pairs-only`` times pairs only (the single variables' cost then reads as 0).

CPU time of this process (BLAS and torch on one thread, as a one-thread job), so other work on a
shared machine does not distort the ratio; absolute times still depend on the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

# one BLAS thread, as Snakemake sets for a one-thread job
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.core.config import load_yaml, sample_variations  # noqa: E402
from analysis.stats import input_gof  # noqa: E402
from analysis.stats.chunks import chunk_count  # noqa: E402

T = TypeVar("T")
#: The result layout of the files a gof job reads (workflow/rules/paths.smk).
PATTERNS = (
    "preselect/{sample}/{variation}.root",
    "friends/{sample}/{variation}.root",
    "scores/{sample}/{variation}.root",
)
CORES = 2


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` layered on ``base`` as Snakemake layers a configfile (mappings merged)."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """What a gof job reads (``gof_settings`` of the workflow), on pseudo-data."""
    gof = {**config["gof"], "data": "pseudo"}
    gof["variables"] = gof["variables"] or config["train"]["features"]
    inference = {key: config["inference"][key] for key in ("interpolation", "fit", "refits")}
    sections = ("histograms", "workspace")
    return {"gof": gof, "inference": inference, **{key: config[key] for key in sections}}


def manifest_of(config: dict[str, Any], samples: dict[str, Any], results: Path) -> dict:
    """Every sample's files per variation (``gof_manifest`` of the workflow)."""
    return {
        name: {
            "spec": spec,
            "weights": config["weights"],
            "files": {
                variation: [
                    str(results / p.format(sample=name, variation=variation)) for p in PATTERNS
                ]
                for variation in sample_variations(spec, config["variations"])
            },
        }
        for name, spec in samples.items()
    }


def cpu(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """``function(*args, **kwargs)`` and the CPU seconds it took."""
    start = time.process_time()
    result = function(*args, **kwargs)
    return result, time.process_time() - start


def spread(items: Sequence[T], n: int) -> list[T]:
    """``n`` items evenly spread over ``items``."""
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def measure(args: argparse.Namespace) -> None:
    """Parts 1 to 3 of the module's docstring."""
    config = load_yaml(REPO / "config" / "config.yaml")
    if args.configfile:
        config = merged(config, load_yaml(args.configfile))
    samples = load_yaml(REPO / "config" / "samples.yaml")["samples"]
    settings = settings_of(config)
    gof = settings["gof"]
    singles = input_gof.tests_of(gof["variables"], pairs=False)
    pairs = input_gof.tests_of(gof["variables"], pairs=True)[len(singles) :]
    chosen = ([] if args.pairs_only else spread(singles, args.tests)) + spread(pairs, args.tests)
    variables = sorted({name for test in chosen for name in test})
    manifest = manifest_of(config, samples, args.results.resolve())
    (inputs, edges), read = cpu(input_gof.read_inputs, manifest, settings, variables)
    print(f"read {len(variables)} variables of {len(samples)} samples: {read:.1f} s CPU")
    costs: dict[int, list[float]] = {1: [], 2: []}
    batched = one_at_a_time = 0.0
    compare = {**settings, "gof": {**gof, "toys": args.compare_toys}}
    profiled = unprofiled = 0.0
    toys = args.compare_toys
    print(f"per test, CPU s: build, {gof['toys']} toys together | {toys} toys together, one at "
          f"a time, ratio; fallbacks | {toys} toys without profiling, ms per toy without / "
          "with, ratio; fallbacks")  # fmt: skip
    for test in chosen:
        built, build = cpu(input_gof.build_test, inputs, edges, test, settings)
        entry, run = cpu(input_gof.evaluate_test, built, test, settings)
        costs[len(test)].append(build + run)
        _, together = cpu(input_gof.evaluate_test, built, test, compare)
        single, alone = cpu(input_gof.evaluate_test, built, test, compare, batch=1)
        every, full = cpu(input_gof.evaluate_test, built, test, compare, profile=False)
        batched, one_at_a_time = batched + together, one_at_a_time + alone
        profiled, unprofiled = profiled + together, unprofiled + full
        npars = built.setup.model.config.npars
        print(
            f"  {' x '.join(test):22s} {entry.bins:4d} bins {npars:4d} pars "
            f"{build:6.2f} {run:7.2f} | {together:6.2f} {alone:7.2f} {alone / together:5.1f}; "
            f"{entry.fallbacks} / {single.fallbacks} | {1e3 * full / toys:7.1f} "
            f"{1e3 * together / toys:6.1f} {full / together:5.1f}; {every.fallbacks}"
        )
    print(f"toys fitted together vs one at a time on these tests: {one_at_a_time / batched:.1f} "
          f"times less CPU ({batched:.1f} s against {one_at_a_time:.1f} s)")  # fmt: skip
    print(f"staterror profiled vs every parameter moved on these tests: "
          f"{unprofiled / profiled:.1f} times less CPU ({profiled:.1f} s against "
          f"{unprofiled:.1f} s, MINUIT fallbacks included)")  # fmt: skip
    extrapolate(len(singles), len(pairs), costs, read, gof)


def extrapolate(
    n_singles: int, n_pairs: int, costs: dict[int, list[float]], read: float, gof: dict
) -> None:
    """The default run's CPU time from the measured means (part 3 of the module's docstring)."""
    jobs = chunk_count(n_singles + n_pairs, gof["chunk_size"])
    # every job reads its variables' columns of every file once; what that costs is mostly
    # opening the files, so about what reading the timed tests' variables cost
    reading = jobs * read
    single, pair = (float(np.mean(costs[size])) if costs[size] else 0.0 for size in (1, 2))
    total = reading + n_singles * single + n_pairs * pair
    print(
        f"run with pairs ({n_singles} variables + {n_pairs} pairs x {gof['toys']} toys, {jobs} "
        f"jobs): {n_singles} x {single:.1f} s + {n_pairs} x {pair:.1f} s + reading "
        f"{reading:.0f} s = {total / 3600:.2f} CPU hours, {total / CORES / 60:.0f} min on "
        f"{CORES} cores"
    )
    alone = chunk_count(n_singles, gof["chunk_size"]) * read + n_singles * single
    print(f"without pairs: {alone / 60:.1f} CPU min, {alone / CORES / 60:.1f} min on {CORES} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="a toy run's results")
    parser.add_argument("--configfile", type=Path, help="the configfile the toy run used")
    parser.add_argument("--tests", type=int, default=3, help="single variables and pairs timed")
    parser.add_argument("--compare-toys", type=int, default=20, help="toys of the comparisons")
    parser.add_argument("--pairs-only", action="store_true", help="time pairs only")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    measure(args)


if __name__ == "__main__":
    main()
