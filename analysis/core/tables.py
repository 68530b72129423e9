"""Text tables of the stages (yields, cutflows): Markdown and LaTeX rows, escaping and writing.

The Markdown tables go into the Snakemake report, the LaTeX ones into a paper; both are built
from the same cells, so the helpers here only format rows and never decide what a table holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from analysis.core.io import atomic_path


def tex(text: str) -> str:
    """``text`` safe in LaTeX: process, channel, sample and cut names have underscores."""
    return text.replace("_", r"\_")


def value_error(value: float, error: float, latex: bool = False) -> str:
    """``value ± error`` with two decimals, in math mode for LaTeX."""
    return rf"${value:.2f} \pm {error:.2f}$" if latex else f"{value:.2f} ± {error:.2f}"


def markdown_row(cells: Sequence[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: the header, its rule and one line per row."""
    return [markdown_row(header), "|---" * len(header) + "|", *map(markdown_row, rows)]


def markdown_section(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A titled Markdown table (one channel of a yields table) followed by a blank line."""
    return [f"### {title}", "", *markdown_table(header, rows), ""]


def latex_row(cells: Sequence[str]) -> str:
    """One LaTeX ``tabular`` row (cells already escaped)."""
    return " & ".join(cells) + r" \\"


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a table (or any text output) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
