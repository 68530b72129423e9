"""Splitting a stage's work (ranked parameters, scan points, goodness-of-fit tests) into chunks,
one Snakemake job each: the workflow counts the chunks, each job takes its own slice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from analysis.core.errors import AnalysisError

T = TypeVar("T")


def chunk_count(n_items: int, chunk_size: int) -> int:
    """Number of chunks of ``chunk_size`` items that cover ``n_items`` (at least one)."""
    return max(1, math.ceil(n_items / chunk_size))


def chunk_items(items: Sequence[T], chunk: int, chunk_size: int, what: str, stage: str) -> list[T]:
    """The items of one chunk (chunks cover the list in order, the last may be shorter).

    ``what`` names the items and ``stage`` the target to rerun in the error of a chunk that no
    longer exists (the workflow counted the chunks from an older input).
    """
    n_chunks = chunk_count(len(items), chunk_size)
    if not 0 <= chunk < n_chunks:
        raise AnalysisError(
            f"{stage} chunk {chunk} does not exist: {len(items)} {what} in {n_chunks} chunks; "
            f"rerun the {stage} so the workflow recounts them"
        )
    return list(items[chunk * chunk_size : (chunk + 1) * chunk_size])
