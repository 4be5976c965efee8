"""Checks that text is drawn with real glyphs, not boxes — by font and by pixels.

By font: the font matplotlib itself falls back to for each character (its own layout, where it
has one: matplotlib 3.11+), and that font's character map must have the character; a glyph
taken from the Last Resort font, or glyph 0 (.notdef), is a box.
By pixels: each character drawn alone must differ from the box a font without it draws (the
same for every character of a Unicode block), and from every other character of the text.
Used in-process and by the child processes of tests/test_report_charts_cjk.py.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Drawn with only this font, a CJK character is a box: the reference for "missing".
NO_CJK = "DejaVu Sans"


def _is_box(font: Any, char: str, glyph: int) -> bool:
    return glyph == 0 or "LastResort" in str(font.fname) or font.get_char_index(ord(char)) == 0


def sources(text: str, prop: Any = None) -> dict[str, str | None]:
    """Each character of ``text`` and the font file matplotlib draws it from with the font
    properties ``prop`` (default: the current rcParams); None where it draws a box."""
    prop = prop if prop is not None else font_manager.FontProperties()
    chain = font_manager.fontManager._find_fonts_by_props(prop)
    font = font_manager.get_font(chain)
    out: dict[str, str | None] = {}
    if hasattr(font, "_layout"):  # matplotlib 3.11+: exactly what the renderer will draw
        from matplotlib.ft2font import LoadFlags

        for item in font._layout(text, LoadFlags.NO_HINTING):
            box = _is_box(item.ft_object, item.char, item.glyph_index)
            out[item.char] = None if box else str(item.ft_object.fname)
        return out
    # Before: FreeType's fallback takes the first font of the list whose cmap has the char.
    from matplotlib import ft2font

    fonts = [ft2font.FT2Font(str(p)) for p in chain]
    for char in text:
        found = next((f for f in fonts if f.get_char_index(ord(char))), None)
        out[char] = None if found is None or "LastResort" in str(found.fname) else str(found.fname)
    return out


def image(text: str, prop: Any, size: float = 48) -> np.ndarray:
    """The ink of ``text`` drawn alone with ``prop`` (a boolean array, cropped)."""
    prop = prop.copy()
    prop.set_size(size)
    figure = Figure(figsize=(0.2 + 0.9 * len(text), 1.2), dpi=100)
    canvas = FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, text, fontproperties=prop, ha="center", va="center")
    canvas.draw()
    ink = np.asarray(canvas.buffer_rgba())[..., :3].min(axis=2) < 128
    rows, cols = np.nonzero(ink)
    if not len(rows):
        return ink[:0, :0]
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def box(text: str) -> np.ndarray:
    """``text`` drawn with a font that has none of its CJK glyphs: boxes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        return image(text, font_manager.FontProperties(family=NO_CJK))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def boxes(text: str, prop: Any = None) -> list[str]:
    """The characters of ``text`` drawn as boxes with ``prop`` (default: the rcParams): the
    same ink as the box a font without them draws, or as another character's ink."""
    prop = prop if prop is not None else font_manager.FontProperties()
    chars = list(dict.fromkeys(c for c in text if not c.isspace()))
    with warnings.catch_warnings():
        # a missing glyph is what this looks for: counted here, not raised
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        drawn = {c: image(c, prop) for c in chars}
    bad = [c for c in chars if same(drawn[c], box(c))
           or any(same(drawn[c], drawn[o]) for o in chars if o != c)]
    return bad


def latin_only_font(path: Any, family: str) -> None:
    """Writes a TrueType font named ``family`` that has only a few Latin glyphs: a font whose
    name promises CJK but whose character map has none."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    def square() -> Any:
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0))
        pen.lineTo((100, 700))
        pen.lineTo((500, 700))
        pen.lineTo((500, 0))
        pen.closePath()
        return pen.glyph()

    names = [".notdef", "space", "A", "B"]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({0x20: "space", 0x41: "A", 0x42: "B"})
    builder.setupGlyf({n: square() if n != "space" else TTGlyphPen(None).glyph()
                       for n in names})
    builder.setupHorizontalMetrics({n: (600, 100) for n in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": family, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))
