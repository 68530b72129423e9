"""Benchmark of histogram filling: our one-pass fill against plain boost_histogram.

Fills one channel with the nominal and N weight variations of the same events, via
``analysis.stats.histograms.fill_columns`` (selection mask, hist with weighted storage per
variation), and as a reference fills plain ``boost_histogram`` histograms with the same, pre-
selected arrays in the same run. Prints the fill rate (events x variations per second) and the
ratio.

Usage: python bench/histograms.py [--events 2000000] [--variations 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import boost_histogram as bh
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.stats.histograms import Channel, fill_columns  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--variations", type=int, default=12)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    n = args.events
    columns = {
        "event": np.arange(n, dtype=np.uint64),
        "is_os": rng.integers(0, 2, n).astype(np.int32),
        "category": rng.integers(0, 5, n).astype(np.int32),
        "max_score": rng.uniform(0.2, 1.0, n).astype(np.float32),
        "weight": rng.uniform(0.5, 1.5, n),
    }
    weights = {"nominal": "weight"}
    for index in range(args.variations):
        columns[f"w{index}"] = columns["weight"] * rng.uniform(0.9, 1.1, n)
        weights[f"v{index}"] = f"w{index}"
    edges = list(np.linspace(0, 1, 21))
    channel = Channel("sig", {"is_os": 1}, "max_score", 0)
    start = time.perf_counter()
    ours = fill_columns(columns, [channel], {"sig": edges}, weights)
    ours_seconds = time.perf_counter() - start

    mask = (columns["is_os"] == 1) & (columns["category"] == 0)
    values = columns["max_score"][mask]
    selected = {name: columns[column][mask] for name, column in weights.items()}
    start = time.perf_counter()
    plain = {}
    for name, weight in selected.items():
        histogram = bh.Histogram(bh.axis.Variable(edges), storage=bh.storage.Weight())
        histogram.fill(values, weight=weight)
        plain[name] = histogram
    plain_seconds = time.perf_counter() - start
    for name in weights:
        np.testing.assert_allclose(ours[("sig", name)].values(), plain[name].values(), rtol=1e-9)
    fills = n * len(weights)
    print(f"ours: {fills / ours_seconds:,.0f} events x variations / s (selection included)")
    print(f"plain boost_histogram on pre-selected arrays: {fills / plain_seconds:,.0f} / s")
    print(f"ratio ours / plain: {plain_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()
