"""Font subsets reused across figures: the same PDF bytes as matplotlib's own subsetting, with
the second figure of a glyph set served from the kept subsets."""

from __future__ import annotations

from matplotlib.backends import _backend_pdf_ps

from analysis.core.config import load_yaml
from analysis.plots import fonts
from analysis.plots.style import labelled_figure, save_figure, style_from_settings
from tests.conftest import REPO

STYLE = style_from_settings(load_yaml(REPO / "config" / "config.yaml")["plots"])


def _figure_pdf(directory, name: str, text: str) -> bytes:
    """A labelled figure with ``text`` as its x-axis title, saved as PDF."""
    fig, ax = labelled_figure(STYLE._replace(formats=("pdf",)), data=False)
    ax.plot([0, 1, 2], [3, 1, 2])
    ax.set_xlabel(text)
    (path,) = save_figure(fig, directory / name, STYLE._replace(formats=("pdf",)))
    return path.read_bytes()


def test_reused_subsets_give_the_same_pdf_as_matplotlib(tmp_path, monkeypatch):
    assert fonts.reuse_font_subsets()  # installed by the style module; a second call is a no-op
    reusing = _backend_pdf_ps.get_glyphs_subset
    assert reusing.reuses_subsets
    monkeypatch.setattr(fonts, "_SUBSETS", {})

    first = _figure_pdf(tmp_path, "first", "$m_{T}$ (GeV) 0123")
    kept = dict(fonts._SUBSETS)
    again = _figure_pdf(tmp_path, "again", "$m_{T}$ (GeV) 0123")
    assert fonts._SUBSETS.keys() == kept.keys()
    assert all(fonts._SUBSETS[key] is kept[key] for key in kept), "a subset was made again"
    other = _figure_pdf(tmp_path, "other", "Visible mass xyz (GeV)")
    assert len(fonts._SUBSETS) > len(kept), "other glyphs must make their own subset"

    monkeypatch.setattr(_backend_pdf_ps, "get_glyphs_subset", reusing.__wrapped__)
    assert first == again == _figure_pdf(tmp_path, "plain", "$m_{T}$ (GeV) 0123")
    assert other == _figure_pdf(tmp_path, "plain_other", "Visible mass xyz (GeV)")


def test_other_subsetting_is_left_alone(monkeypatch):
    monkeypatch.delattr(_backend_pdf_ps, "SubsetResults")
    monkeypatch.setattr(_backend_pdf_ps, "get_glyphs_subset", lambda fontfile, glyphs: None)
    assert not fonts.reuse_font_subsets()
    assert _backend_pdf_ps.get_glyphs_subset(None, ()) is None
