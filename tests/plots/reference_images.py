"""The key figures compared with stored references by ``tests/plots/test_plots.py``.

The references in ``tests/data/reference_plots`` change on purpose only, by this command (never
by a test run); look at the new images and state the reason in the commit::

    python -m tests.plots.reference_images
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from analysis.plots import stacks as plot_stacks
from analysis.plots import training as plot_training
from analysis.plots.style import style_from_settings
from tests.conftest import DATA
from tests.plots.inputs import SETTINGS, diagnostics_file, write_fit_inputs

REFERENCES = DATA / "reference_plots"
#: Small figures: the comparison is about content and style, not resolution.
STYLE = style_from_settings({**SETTINGS, "formats": ["png"], "dpi": 50})
NAMES = ("roc", "postfit")


def draw(name: str, inputs: Path, output: Path) -> Path:
    """Draw the reference figure ``name`` into ``output`` from the synthetic stage outputs in
    ``inputs`` (written by :func:`write_inputs`)."""
    if name == "roc":
        return plot_training.plot_roc(str(inputs / "diagnostics.json"), output / "roc", STYLE)[0]
    if name == "postfit":
        plot_stacks.plot_prepostfit(
            str(inputs / "workspace.json"), str(inputs / "fit.json"), output, STYLE
        )
        return output / "low_postfit.png"
    raise ValueError(f"no reference figure {name!r}; choose from {NAMES}")


def write_inputs(directory: Path) -> None:
    """The synthetic inputs of every reference figure."""
    diagnostics_file(directory)
    write_fit_inputs(directory)


def main() -> None:
    REFERENCES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = Path(tmp) / "inputs", Path(tmp) / "output"
        inputs.mkdir()
        output.mkdir()
        write_inputs(inputs)
        for name in NAMES:
            shutil.copyfile(draw(name, inputs, output), REFERENCES / f"{name}.png")
            print(f"wrote {REFERENCES / f'{name}.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
