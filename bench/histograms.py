"""Benchmark of histogram filling: our one-pass fill against plain boost_histogram.

Fills one channel with the nominal and N weight variations of the same events, via
``analysis.stats.histograms.fill_columns`` (selection mask, hist with weighted storage per
variation), and as the reference the same work written with numpy and plain ``boost_histogram``:
the selection mask (``is_os == 1`` and the category) and one weighted fill per variation, both
inside the timed region. Each side is run once untimed (warm-up), then the two alternate and the
best of ``--repeats`` runs counts. Both are single-threaded and timed in CPU time of this process,
so other work on a shared machine does not distort the ratio. Prints the fill rate as fills per
CPU second (selected events x variations: events outside the channel are not filled) and the
ratio, measured in the same run.

Usage: python bench/histograms.py [--events 2000000] [--variations 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boost_histogram as bh
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.stats.channels import Channel  # noqa: E402
from analysis.stats.histograms import fill_columns  # noqa: E402

EDGES = list(np.linspace(0, 1, 21))


def synthetic_columns(n: int, variations: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Skim-like columns (10% in the channel: half opposite sign, one of 5 categories) and the
    variation -> weight column mapping."""
    rng = np.random.default_rng(1)
    columns = {
        "event": np.arange(n, dtype=np.uint64),
        "is_os": rng.integers(0, 2, n).astype(np.int32),
        "category": rng.integers(0, 5, n).astype(np.int32),
        "max_score": rng.uniform(0.2, 1.0, n).astype(np.float32),
        "weight": rng.uniform(0.5, 1.5, n),
    }
    weights = {"nominal": "weight"}
    for index in range(variations):
        columns[f"w{index}"] = columns["weight"] * rng.uniform(0.9, 1.1, n)
        weights[f"v{index}"] = f"w{index}"
    return columns, weights


def plain_fill(columns: dict[str, np.ndarray], weights: dict[str, str]) -> dict[str, bh.Histogram]:
    """The reference: the channel's mask with numpy, then one boost_histogram fill per variation."""
    mask = (columns["is_os"] == 1) & (columns["category"] == 0)
    values = columns["max_score"][mask]
    result = {}
    for name, column in weights.items():
        histogram = bh.Histogram(bh.axis.Variable(EDGES), storage=bh.storage.Weight())
        histogram.fill(values, weight=columns[column][mask])
        result[name] = histogram
    return result


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best CPU time of each callable: one untimed warm-up each, then ``repeats`` alternations."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--variations", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    columns, weights = synthetic_columns(args.events, args.variations)
    channel = Channel("sig", {"is_os": 1}, "max_score", 0)
    edges = {"sig": EDGES}
    ours, plain = fill_columns(columns, [channel], edges, weights), plain_fill(columns, weights)
    for name in weights:
        np.testing.assert_allclose(ours[("sig", name)].values(), plain[name].values(), rtol=1e-9)
    seconds = alternate(
        {
            "ours": lambda: fill_columns(columns, [channel], edges, weights),
            "plain": lambda: plain_fill(columns, weights),
        },
        args.repeats,
    )
    selected = int(((columns["is_os"] == 1) & (columns["category"] == 0)).sum())
    fills = selected * len(weights)
    print(f"{args.events:,} events, {selected:,} in the channel, {len(weights)} weights each")
    print(f"ours: {fills / seconds['ours']:,.0f} fills per CPU second (selection included)")
    plain = fills / seconds["plain"]
    print(f"plain numpy mask + boost_histogram: {plain:,.0f} fills per CPU second")
    print(f"ratio ours / plain: {seconds['plain'] / seconds['ours']:.2f}")


if __name__ == "__main__":
    main()
