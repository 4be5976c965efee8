"""Fonts for the report charts: a Latin font first, then fonts that really have the glyphs the
labels need (Chinese tags and user names above all), found by their character maps.

Why a list of concrete families: matplotlib (3.6 and later) falls back glyph by glyph only
through the *list* in ``font.family``; a generic family such as ``sans-serif`` resolves to the
first of its members that is installed and stops there, so a CJK font named after DejaVu Sans in
``font.sans-serif`` is never reached and Chinese comes out as boxes.

Why a look at the system's fonts: matplotlib lists fonts from a cache it builds once
(``fontlist-v*.json`` in its cache folder); a font installed after that is unknown to it until
the cache is rebuilt. When the labels need glyphs that no font matplotlib knows has, the system
font folders and fontconfig are searched for one that does; it is added to matplotlib's font
list and the cache is rewritten, and a log line says so.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import QwenMeterWarning

log = logging.getLogger("qwen_meter.report")

#: Font families known to cover Chinese, best first (the names matplotlib gives them); they are
#: tried first, but a family counts only if its font really has the glyphs of :data:`PROBE`.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                "Noto Sans CJK JP", "Noto Sans CJK TC", "Source Han Sans", "Noto Sans CJK KR",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC",
                "Hiragino Sans GB", "Heiti SC", "SimHei", "Droid Sans Fallback",
                "Noto Serif CJK SC", "AR PL UMing CN", "AR PL UKai CN", "Arial Unicode MS")
#: Common Han characters: a font with glyphs for all of them is taken to cover Chinese.
PROBE = "中文智能客服汉字费用"
_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
#: Where the Last Resort font lives: matplotlib (3.10+) draws a missing glyph with it, as a box
#: naming the glyph's Unicode block; a glyph taken from it is a missing glyph.
_LAST_RESORT = "LastResort"

Face = tuple[str, int]
"""A font file and the index of a face in it (0 but in .ttc collections)."""


class MissingFontWarning(QwenMeterWarning, UserWarning):
    """No installed font has the glyphs for some text of a chart (CJK, mostly)."""


@dataclass(frozen=True)
class ChartFonts:
    """The fonts the charts are drawn with."""

    families: tuple[str, ...]
    """``font.family`` for the charts: the Latin font first, then the fallbacks."""
    cjk: tuple[str, ...]
    """The families among :attr:`families` that cover Chinese (empty: none is installed)."""
    missing: str
    """Characters of the labels that no installed font has (drawn as boxes)."""
    added: tuple[str, ...]
    """Font files that matplotlib's stale font cache lacked and that were added to it."""


def _font_manager() -> Any:
    from matplotlib import font_manager

    return font_manager


def _face_of(path: Any) -> Face:
    """The (file, face) of a path ``findfont`` returned (a plain path before matplotlib 3.11)."""
    return (str(os.fspath(path)), int(getattr(path, "face_index", 0)))


@functools.lru_cache(maxsize=4096)
def _covers(face: Face, chars: str) -> str:
    """The characters of ``chars`` that the font ``face`` has a glyph for ('' if unreadable,
    and '' for the Last Resort font, whose glyphs are the boxes)."""
    from matplotlib import ft2font

    path, index = face
    if _LAST_RESORT in os.path.basename(path):
        return ""
    try:
        font = ft2font.FT2Font(path, face_index=index) if index else ft2font.FT2Font(path)
    except (OSError, RuntimeError, TypeError, ValueError):
        return ""  # a file the cache lists but that is gone or unreadable
    return "".join(c for c in chars if font.get_char_index(ord(c)))


def _entries() -> list[Any]:
    return list(_font_manager().fontManager.ttflist)


def _name_of(face: Face) -> str | None:
    """matplotlib's family name for the font ``face`` (its primary name, listed first)."""
    real = os.path.realpath(face[0])
    for entry in _entries():
        if getattr(entry, "index", 0) == face[1] and os.path.realpath(entry.fname) == real:
            return str(entry.name)
    return None


def _resolve(family: str) -> Face | None:
    """The font matplotlib draws ``family`` with (normal weight and style), or None."""
    fm = _font_manager()
    quiet = logging.getLogger("matplotlib.font_manager")
    level = quiet.level
    # a family with no normal weight (DejaVu Sans Light, ...) is logged as a substitution:
    # true, but noise when merely looking for glyphs
    quiet.setLevel(logging.ERROR)
    try:
        return _face_of(fm.fontManager.findfont(fm.FontProperties(family=family),
                                                fallback_to_default=False))
    except ValueError:
        return None
    finally:
        quiet.setLevel(level)


def faces(families: Iterable[str]) -> list[Face]:
    """The fonts matplotlib falls back through, in order, for ``font.family = families``."""
    fm = _font_manager()
    found = fm.fontManager._find_fonts_by_props(fm.FontProperties(family=list(families)))
    out: list[Face] = []
    for path in found:
        if _face_of(path) not in out:
            out.append(_face_of(path))
    return out


def glyph_sources(text: str, families: Iterable[str]) -> list[tuple[str, Face | None]]:
    """Each character of ``text`` and the font it is drawn from with ``font.family =
    families``: the first in the fallback list whose character map has it, as matplotlib's
    fallback picks (None: no font has it, the glyph is a box)."""
    chain = faces(families)
    return [(c, next((f for f in chain if _covers(f, c)), None)) for c in text]


def _drawn(text: str) -> str:
    """The characters of ``text`` that need a glyph (no spaces, controls or joiners)."""
    return "".join(dict.fromkeys(c for c in text if not c.isspace()
                                 and unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")))


def _uncovered(chars: str, families: Iterable[str]) -> str:
    chain = faces(families)
    return "".join(c for c in chars if not any(_covers(f, c) for f in chain))


def _rank(name: str) -> tuple[int, bool, bool, str]:
    """Known CJK families in their order, then sans before serif, proportional before mono."""
    known = CJK_FAMILIES.index(name) if name in CJK_FAMILIES else len(CJK_FAMILIES)
    return (known, "Serif" in name or "Ming" in name or "Kai" in name, "Mono" in name, name)


@functools.lru_cache(maxsize=1)
def _cjk_families(_entries_seen: int) -> tuple[str, ...]:
    """Installed families whose font has every glyph of :data:`PROBE`: the known names first
    (cheap: one file each); all the others only if none of those is installed."""
    names = {str(e.name) for e in _entries()}
    out: list[str] = []
    for group in ([n for n in CJK_FAMILIES if n in names],
                  sorted(names - set(CJK_FAMILIES), key=_rank)):
        for name in group:
            if _covers_cjk(name):
                out.append(name)
        if out:
            break
    return tuple(out)


def _covers_cjk(family: str) -> bool:
    face = _resolve(family)
    return face is not None and _covers(face, PROBE) == PROBE


def cjk_families() -> tuple[str, ...]:
    """Every installed font family that covers Chinese, best first (by glyphs, not by name)."""
    return _cjk_families(len(_entries()))


def cjk_font() -> str | None:
    """The best installed font family that covers Chinese, or None."""
    found = cjk_families()
    return found[0] if found else None


def _head() -> list[str]:
    """The families the charts start with: what ``font.family`` resolves to (DejaVu Sans,
    unless configured otherwise), each generic family replaced by its concrete font."""
    out: list[str] = []
    for face in faces(_rc_family()):
        name = _name_of(face)
        if name and name not in out and _LAST_RESORT not in os.path.basename(face[0]):
            out.append(name)
    return out or ["DejaVu Sans"]


def _rc_family() -> list[str]:
    import matplotlib

    return list(matplotlib.rcParams["font.family"])


def _helpers(chars: str, chain: list[str]) -> list[str]:
    """Families (best first) not in ``chain`` that have glyphs for some of ``chars``."""
    out: list[str] = []
    left = chars
    for name in sorted({str(e.name) for e in _entries()} - set(chain), key=_rank):
        face = _resolve(name)
        if face is not None and (got := _covers(face, left)):
            out.append(name)
            left = "".join(c for c in left if c not in got)
            if not left:
                break
    return out


def _cache_file() -> Path:
    import matplotlib

    fm = _font_manager()
    return Path(matplotlib.get_cachedir(), f"fontlist-v{fm.FontManager.__version__}.json")


@functools.lru_cache(maxsize=1)
def _system_fonts() -> tuple[str, ...]:
    """Font files of the system (fontconfig's list and the usual folders, as matplotlib finds
    them when it builds its cache; MPL_IGNORE_SYSTEM_FONTS is honoured)."""
    fm = _font_manager()
    try:
        return tuple(sorted(set(fm.findSystemFonts())))
    except OSError:
        return ()


def _add_missing_fonts(chars: str) -> list[str]:
    """Adds to matplotlib's font list the system fonts it does not know that have glyphs for
    some of ``chars`` (its cache predates them), rewrites the cache, and says so."""
    fm = _font_manager()
    known = {os.path.realpath(e.fname) for e in _entries()}
    added: list[str] = []
    left = chars
    for path in _system_fonts():
        if os.path.realpath(path) in known:
            continue
        count = _face_count(path)
        if not any(_covers((path, i), left) for i in range(count)):
            continue
        try:
            fm.fontManager.addfont(path)
        except Exception as exc:  # a broken font file is skipped, as matplotlib does
            log.debug("cannot add font %s: %s", path, exc)
            continue
        added.append(path)
        for i in range(count):
            left = "".join(c for c in left if c not in _covers((path, i), left))
        if not left:
            break
    if added:
        cache = _cache_file()
        fm.json_dump(fm.fontManager, cache)  # logs, not raises, if the folder is read-only
        try:
            saved = added[0] in cache.read_text(encoding="utf-8")
        except OSError:
            saved = False
        names = sorted({n for p in added for i in range(_face_count(p))
                        if (n := _name_of((p, i)))})
        log.warning("matplotlib's font cache %s predates %s (%s), which has glyphs the charts "
                    "need: added for this run%s", cache, ", ".join(names), ", ".join(added),
                    " and written to the cache" if saved else " (the cache could not be "
                    "rewritten: it will be added again next time)")
    return added


@functools.lru_cache(maxsize=4096)
def _face_count(path: str) -> int:
    from matplotlib import ft2font

    try:
        return max(1, int(ft2font.FT2Font(path).num_faces))
    except (OSError, RuntimeError, ValueError):
        return 0


def _advice(missing: str, checked: int) -> str:
    shown = "".join(missing[:12]) + ("…" if len(missing) > 12 else "")
    where = (f"checked the {checked} fonts matplotlib knows and the system's font folders "
             "and fontconfig")
    if _CJK.search(missing):
        return (f"no installed font has Chinese, Japanese or Korean glyphs for {shown!r} in the "
                f"chart labels ({where}): they are drawn as boxes. Install a CJK font — Debian "
                "or Ubuntu: apt install fonts-noto-cjk; Fedora: dnf install "
                "google-noto-sans-cjk-fonts; Arch: pacman -S noto-fonts-cjk; Alpine: apk add "
                "font-noto-cjk — and draw again (no cache to clear: a font installed later "
                "is found and added)")
    return (f"no installed font has glyphs for {shown!r} in the chart labels ({where}): they "
            "are drawn as boxes. Install a font that has them (the Noto fonts cover most "
            "scripts) and draw again")


def _extend(chain: list[str], left: str, chars: str) -> str:
    """Appends to ``chain`` the best CJK font if ``left`` (the characters it lacks) has CJK,
    then fonts for whatever else is left; returns what is still left."""
    if _CJK.search(left):
        chain += [f for f in cjk_families() if f not in chain][:1]
        left = _uncovered(chars, chain)
    if left:
        chain += _helpers(left, chain)
        left = _uncovered(chars, chain)
    return left


def chart_fonts(texts: Iterable[str], *, stacklevel: int = 2) -> ChartFonts:
    """The fonts for charts that show ``texts``: the Latin font, then (only if the texts need
    them) the best CJK font and fonts for any other characters the Latin font lacks. A font
    matplotlib's stale cache lacks is found on the system and added; characters no installed
    font has give one :class:`MissingFontWarning` that names them."""
    chars = _drawn("".join(texts))
    chain = _head()
    added: list[str] = []
    left = _extend(chain, _uncovered(chars, chain), chars)
    if left and (added := _add_missing_fonts(left)):
        left = _extend(chain, left, chars)
    if left:
        warnings.warn(_advice(left, len({e.fname for e in _entries()})), MissingFontWarning,
                      stacklevel=stacklevel + 1)
    return ChartFonts(families=tuple(chain),
                      cjk=tuple(f for f in chain if _covers_cjk(f)),
                      missing=left, added=tuple(added))
