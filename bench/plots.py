"""Template figures (the most numerous plots): time per figure with 1 and with 2 worker
processes on the same synthetic histograms file, printed as a ratio measured in the same run.

    python -m bench.plots [--systematics 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import hist
import numpy as np
import uproot

from analysis.plots import stacks as plot_stacks
from analysis.plots.style import style_from_settings


def write_histograms(path: Path, systematics: int) -> None:
    """One channel, two processes, ``systematics`` up/down pairs of 20-bin templates."""
    rng = np.random.default_rng(1)
    with uproot.recreate(path) as root:
        for process in ("ZTT", "TT"):
            names = ["nominal"] + [f"s{k}_{d}" for k in range(systematics) for d in ("up", "down")]
            for name in names:
                h = hist.Hist(hist.axis.Regular(20, 0, 1), storage=hist.storage.Weight())
                h.fill(rng.uniform(size=2000), weight=rng.uniform(0.5, 1.5, size=2000))
                root[f"ch/{process}/{name}"] = h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--systematics", type=int, default=10)
    args = parser.parse_args()
    style = style_from_settings({"formats": ["png", "pdf"], "dpi": 150})
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "histograms.root"
        write_histograms(source, args.systematics)
        seconds = {}
        for workers in (1, 2):
            start = time.perf_counter()
            paths = plot_stacks.plot_templates(
                str(source), Path(tmp) / f"w{workers}", style, workers
            )
            seconds[workers] = time.perf_counter() - start
            figures = len(paths) // len(style.formats)
            print(
                f"{workers} worker(s): {figures} figures, {seconds[workers] / figures:.3f} s each"
            )
        print(f"2 workers / 1 worker time ratio: {seconds[2] / seconds[1]:.2f}")


if __name__ == "__main__":
    main()
