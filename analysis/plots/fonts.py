"""Font subsets of PDF and PostScript files, made once per process and glyph set.

A PDF keeps its text as text (``pdf.fonttype: 42``), so every saved figure embeds the subset of
each font that holds the glyphs it uses, and matplotlib makes that subset anew with fontTools for
every file: about 0.1 s of CPU per font, a third of the cost of a template figure. The figures
of an analysis share most glyph sets (the experiment label's bold and italic fonts always, the
tick labels and axis titles often), so :func:`reuse_font_subsets` keeps each subset made in this
process and gives a later file the same bytes, as a font loaded from them. The files are the
same byte for byte as without it (tests/plots/test_fonts.py).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import Any

from fontTools.ttLib import TTFont
from matplotlib.backends import _backend_pdf_ps

#: Subsets made in this process: (font file, face, glyph indices) -> (font bytes, index map).
_SUBSETS: dict[tuple[str, int, frozenset[int]], tuple[bytes, dict[int, int]]] = {}


def reuse_font_subsets() -> bool:
    """Make matplotlib's font subsetting reuse the subsets already made in this process.

    Returns:
        Whether it does: False (and matplotlib is left as it is) for a matplotlib whose
        subsetting has another form than the one this wraps (``SubsetResults``, 3.11).
    """
    make = _backend_pdf_ps.get_glyphs_subset
    if getattr(make, "reuses_subsets", False):
        return True
    if not hasattr(_backend_pdf_ps, "SubsetResults"):
        return False
    _backend_pdf_ps.get_glyphs_subset = _reusing(make)
    return True


def _reusing(make: Callable[[Any, Iterable[int]], Any]) -> Callable[[Any, Iterable[int]], Any]:
    """``make`` (matplotlib's subsetting) with its results kept by font and glyph set."""

    def get_glyphs_subset(fontfile: Any, glyphs: Iterable[int]) -> Any:
        glyphs = frozenset(glyphs)
        key = (os.fspath(getattr(fontfile, "path", fontfile)),
               int(getattr(fontfile, "face_index", 0)), glyphs)  # fmt: skip
        if key not in _SUBSETS:
            with make(fontfile, glyphs) as subset:
                stream = io.BytesIO()
                subset.font.save(stream, reorderTables=False)  # as matplotlib writes it
                _SUBSETS[key] = (stream.getvalue(), dict(subset.glyph_index_map))
        data, index_map = _SUBSETS[key]
        # a font read from the bytes, not decompiled or recomputed, saves as the same bytes
        font = TTFont(io.BytesIO(data), recalcBBoxes=False, recalcTimestamp=False)
        return _backend_pdf_ps.SubsetResults(font, dict(index_map))._as_cm()

    get_glyphs_subset.reuses_subsets = True  # type: ignore[attr-defined]
    get_glyphs_subset.__wrapped__ = make  # type: ignore[attr-defined]
    return get_glyphs_subset
