"""Template figures (the most numerous plots): time per figure with 1 and with 2 worker
processes on the same synthetic histograms file, and the saving of each figure in PDF and PNG
with its tight bounding box measured once (style.save_figure) against matplotlib's
``bbox_inches="tight"``, which measures it anew for each format, and with the PDF font subsets
reused across figures (plots/fonts.py) against matplotlib making them for every file; all printed
as ratios measured in the same run.

    python -m bench.plots [--systematics 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import hist
import matplotlib.pyplot as plt
import numpy as np
import uproot
from matplotlib.backends import _backend_pdf_ps

from analysis.plots import fonts
from analysis.plots import stacks as plot_stacks
from analysis.plots.style import output_paths, style_from_settings


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
        saving = {}
        (Path(tmp) / "saving").mkdir()
        for mode in ("tight per format", "measured once", "tight per format", "measured once"):
            plot_stacks.save_figure = _saver(mode)
            start = time.process_time()
            paths = plot_stacks.plot_templates(str(source), Path(tmp) / "saving", style, 1)
            figures = len(paths) // len(style.formats)
            saving.setdefault(mode, []).append((time.process_time() - start) / figures)
        for mode, times in saving.items():
            print(f"{mode}: {min(times):.3f} s CPU per figure (best of {len(times)})")
        ratio = min(saving["measured once"]) / min(saving["tight per format"])
        print(f"bounding box measured once / per format time ratio: {ratio:.2f}")
        plot_stacks.save_figure = SAVE_FIGURE
        print_font_subsets(source, Path(tmp) / "fonts", style)


def print_font_subsets(source: Path, output: Path, style) -> None:
    """CPU per template figure with the font subsets made for every PDF and reused (the
    process's kept subsets emptied first, so the reused run pays for its own)."""
    output.mkdir()
    reusing = _backend_pdf_ps.get_glyphs_subset
    cpu: dict[str, list[float]] = {}
    for mode in ("made per file", "reused", "made per file", "reused"):
        _backend_pdf_ps.get_glyphs_subset = reusing if mode == "reused" else reusing.__wrapped__
        fonts._SUBSETS.clear()
        start = time.process_time()
        paths = plot_stacks.plot_templates(str(source), output, style, 1)
        cpu.setdefault(mode, []).append(
            (time.process_time() - start) * len(style.formats) / len(paths)
        )
    _backend_pdf_ps.get_glyphs_subset = reusing
    for mode, times in cpu.items():
        print(f"font subsets {mode}: {min(times):.3f} s CPU per figure (best of {len(times)})")
    ratio = min(cpu["reused"]) / min(cpu["made per file"])
    print(f"font subsets reused / made per file time ratio: {ratio:.2f}")


def _saver(mode: str):
    """style.save_figure, or the same with savefig measuring the tight box for each format."""
    if mode == "measured once":
        return SAVE_FIGURE

    def save_per_format(fig, prefix, style):
        paths = output_paths(prefix, style)
        for path in paths:
            fig.savefig(path, format=path.suffix[1:], dpi=style.dpi, bbox_inches="tight")
        plt.close(fig)
        return paths

    return save_per_format


SAVE_FIGURE = plot_stacks.save_figure


if __name__ == "__main__":
    main()
