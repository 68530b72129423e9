"""Systematic variations as values: a source and a direction, instead of strings to parse.

A variation is named ``<source>_<direction>`` in file names, histogram paths and weight columns
(``tau_es_up``, ``pileup_down``) and ``nominal`` for the nominal; :meth:`Variation.parse` and
:attr:`Variation.name` are the only places that know this spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

NOMINAL = "nominal"
DIRECTIONS = ("up", "down")


class Variation(NamedTuple):
    """One side of a systematic variation, or the nominal (``source`` ``nominal``, no direction)."""

    source: str
    direction: str | None = None

    @property
    def name(self) -> str:
        """The spelling used in files and histograms: ``tau_es_up``, or ``nominal``."""
        return self.source if self.direction is None else f"{self.source}_{self.direction}"

    @property
    def is_nominal(self) -> bool:
        return self.direction is None

    @classmethod
    def parse(cls, name: str) -> Variation:
        """The variation a name spells; a name without ``_up``/``_down`` is a nominal-like one."""
        source, _, direction = name.rpartition("_")
        if source and direction in DIRECTIONS:
            return cls(source, direction)
        return cls(name)

    def __str__(self) -> str:
        return self.name


def both(source: str) -> tuple[Variation, Variation]:
    """The up and down variations of ``source``."""
    return Variation(source, "up"), Variation(source, "down")


def names(source: str) -> tuple[str, str]:
    """``(<source>_up, <source>_down)``."""
    up, down = both(source)
    return up.name, down.name


def sources(variation_names: Iterable[str]) -> list[str]:
    """The distinct sources of up/down variations among names, in first-seen order."""
    seen: dict[str, None] = {}
    for name in variation_names:
        variation = Variation.parse(name)
        if not variation.is_nominal:
            seen.setdefault(variation.source)
    return list(seen)


def expand(source_names: Iterable[str]) -> Iterator[Variation]:
    """Up then down of each source, in order."""
    for source in source_names:
        yield from both(source)
