"""Chinese in the report charts is drawn with real glyphs, not boxes: checked on the glyphs
themselves (the font matplotlib takes each character from, and the pixels drawn), never by
filtering warnings — with the CJK font installed, with a matplotlib font cache that predates
it, and with none installed at all (one true warning that says what to install)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

import glyph_checks
from matplotlib import font_manager
from matplotlib.text import Text

import qwen_meter as qm
from qwen_meter.cli.main import main
from qwen_meter.report import build_report, charts, fonts, load_usage

ROOT = Path(__file__).resolve().parents[1]
TAG = "feature=智能客服"
HAN = "智能客服"


def _has_cjk_font() -> bool:
    """fonts-noto-cjk is installed on the developers' machines and in CI (.ci/run, which sets
    QWEN_METER_REQUIRE_CJK_FONT so these tests fail rather than skip without it). matplotlib's
    font cache may predate the font (the charts still find it), so fontconfig is asked too."""
    if any(fonts._covers((e.fname, getattr(e, "index", 0)), HAN) == HAN
           for e in font_manager.fontManager.ttflist):
        return True
    try:
        listed = subprocess.run(["fc-list", ":charset=" + " ".join(f"{ord(c):x}" for c in HAN),
                                 "file"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(listed.strip())


@pytest.fixture(scope="module")
def usage_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cjk") / "usage.jsonl"
    log = qm.JsonlLog(path)
    for day in range(1, 6):
        for tag, user in ((TAG, "王小明"), ("team=a", "alice")):
            log.append(qm.UsageRecord(model="qwen-plus", time=f"2026-11-0{day}T10:00:00+00:00",
                                      prompt_tokens=100, completion_tokens=10, cost="0.01",
                                      currency="CNY", tags=(tag,), user=user))
    log.close()
    return path


@pytest.fixture(scope="module")
def report(usage_log):
    return build_report(load_usage(usage_log, tz="UTC"), by=["tag"])


needs_cjk_font = pytest.mark.skipif(
    not _has_cjk_font() and not os.environ.get("QWEN_METER_REQUIRE_CJK_FONT"),
    reason="no CJK font installed (fonts-noto-cjk)")


@needs_cjk_font
def test_chart_labels_are_drawn_with_real_cjk_glyphs(report):
    """Every text of every chart that holds CJK: each character comes from a font whose cmap
    has it (the Latin ones from the Latin font, first in the list), and drawn alone it is not
    the box, nor the same ink as another character; matplotlib says no glyph is missing."""
    plt = charts._pyplot()
    seen = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph .* missing from", category=UserWarning)
        with charts._style(report):
            families = list(plt.rcParams["font.family"])
            for _, draw in charts.charts(report):
                figure, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
                draw(ax)
                figure.canvas.draw()
                for text in figure.findobj(Text):
                    label = text.get_text()
                    if not fonts._CJK.search(label):
                        continue
                    seen.append(label)
                    prop = text.get_fontproperties()
                    drawn = glyph_checks.sources(label, prop)
                    assert None not in drawn.values(), (label, drawn)
                    han = "".join(c for c in label if fonts._CJK.match(c))
                    assert glyph_checks.boxes(han, prop) == [], label
                    first = font_manager.findfont(families[0])
                    assert all(os.path.samefile(drawn[c], first) for c in label
                               if c.isascii()), (label, drawn)
                plt.close(figure)
    assert TAG in seen
    assert families[0] == "DejaVu Sans" and any(f in families for f in fonts.cjk_families())


@needs_cjk_font
def test_the_han_text_differs_from_four_boxes(report):
    with charts._style(report):
        prop = font_manager.FontProperties()
        drawn = glyph_checks.image(HAN, prop)
    boxes = glyph_checks.box(HAN)
    assert not glyph_checks.same(drawn, boxes)
    # and the check can fail: the same text without the CJK font is the four boxes
    latin_only = font_manager.FontProperties(family=glyph_checks.NO_CJK)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        assert glyph_checks.same(glyph_checks.image(HAN, latin_only), boxes)


def test_the_glyph_checks_see_boxes_when_the_font_list_has_no_cjk_font():
    """The checks above go red when the CJK font is left out of the list: by font and by
    pixels, each of the four characters is a box (this is what the charts drew before)."""
    prop = font_manager.FontProperties(family=["sans-serif"])  # one font, no fallback
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        drawn = glyph_checks.sources(TAG, prop)
        assert [c for c, font in drawn.items() if font is None] == list(HAN)
        assert glyph_checks.boxes(HAN, prop) == list(HAN)


@needs_cjk_font
def test_cjk_fonts_are_found_by_their_glyphs():
    chosen = fonts.chart_fonts([TAG, "王小明"])  # first: it mends a stale font cache
    assert chosen.families[0] == "DejaVu Sans" and chosen.cjk and not chosen.missing
    assert all(font for _, font in fonts.glyph_sources(TAG, chosen.families))
    found = fonts.cjk_families()
    assert found and fonts.cjk_font() == found[0] and chosen.cjk[0] == found[0]
    for family in found:
        face = fonts._resolve(family)
        assert face is not None and fonts._covers(face, fonts.PROBE) == fonts.PROBE
    assert fonts.chart_fonts(["team=a", "qwen-plus"]).families == ("DejaVu Sans",)


@needs_cjk_font
def test_plot_from_the_cli_draws_the_cjk_glyphs(usage_log, tmp_path, capsys):
    """``qwen-meter report --plot charts.svg``: in the file, the tag label is drawn with the
    glyphs the CJK font's character map gives for 智能客服 (matplotlib names each glyph it
    draws in an SVG by font and glyph index)."""
    from matplotlib import ft2font

    out = tmp_path / "charts.svg"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph .* missing from", category=UserWarning)
        assert main(["report", str(usage_log), "--by", "tag", "--tz", "UTC", "--plot",
                     str(out)]) == 0
    assert HAN in capsys.readouterr().out
    svg = out.read_text(encoding="utf-8")
    label = svg[svg.index(f"<!-- {TAG} -->"):]
    label = label[:label.index("<!--", 5)]
    used = re.findall(r'<use xlink:href="#([^"]+)"', label)
    assert len(used) == len(TAG), used
    path, index = fonts._resolve(fonts.cjk_font())  # type: ignore[arg-type,misc]
    font = ft2font.FT2Font(path, face_index=index) if index else ft2font.FT2Font(path)
    want = [f"{font.postscript_name}-{font.get_char_index(ord(c)):x}" for c in HAN]
    assert used[-len(HAN):] == want and all(font.get_char_index(ord(c)) for c in HAN)
    assert all(u.startswith("DejaVuSans-") for u in used[:-len(HAN)])


# In a child process: matplotlib reads its font list once, at import, from MPLCONFIGDIR.
CHILD = r"""
import json, logging, sys, warnings
import matplotlib
from matplotlib import font_manager
import glyph_checks
from qwen_meter.report import build_report, charts, fonts, load_usage

if len(sys.argv) > 3:  # a font that is named like a CJK one but has only Latin glyphs
    glyph_checks.latin_only_font(sys.argv[3], "SimHei")
    font_manager.fontManager.addfont(sys.argv[3])
known = [e.name for e in font_manager.fontManager.ttflist
         if fonts._covers((e.fname, getattr(e, "index", 0)), "智")]
system = len(font_manager.findSystemFonts())
logs = []
handler = logging.Handler()
handler.emit = lambda record: logs.append(record.getMessage())
logging.getLogger("qwen_meter").addHandler(handler)
report = build_report(load_usage(sys.argv[1], tz="UTC"), by=["tag"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    charts.save_charts(report, sys.argv[2])
with warnings.catch_warnings(record=True):  # told above already
    with charts._style(report):
        families = list(matplotlib.rcParams["font.family"])
        drawn = glyph_checks.sources("feature=智能客服")
        boxes = glyph_checks.boxes("智能客服")
json.dump({"known_before": known, "system_fonts": system, "logs": logs, "families": families,
           "drawn": drawn, "boxes": boxes, "cjk": list(fonts.cjk_families()),
           "warnings": [[w.category.__name__, str(w.message)] for w in caught]}, sys.stdout)
"""


def _child(mplconfig: Path, usage_log: Path, out: Path, *extra: str, **env: str) -> dict:
    environ = {**os.environ, "MPLCONFIGDIR": str(mplconfig), **env,
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(usage_log), str(out), *extra],
                          capture_output=True, text=True, env=environ, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cache(folder: Path) -> Path:
    return folder / f"fontlist-v{font_manager.FontManager.__version__}.json"


@needs_cjk_font
def test_a_font_cache_that_predates_the_cjk_font_is_mended(usage_log, tmp_path):
    """matplotlib's font cache written before the CJK font was installed: the charts still
    draw Chinese (the font is found on the system, added, and the cache rewritten, which a
    log line says), and the next run reads the mended cache."""
    folder = tmp_path / "mpl"
    folder.mkdir()
    stale = copy.copy(font_manager.fontManager)
    stale.ttflist = [e for e in font_manager.fontManager.ttflist
                     if not fonts._covers((e.fname, getattr(e, "index", 0)), "智")]
    stale.afmlist = list(font_manager.fontManager.afmlist)
    font_manager.json_dump(stale, _cache(folder))
    assert "CJK" not in _cache(folder).read_text()

    first = _child(folder, usage_log, tmp_path / "first.png")
    assert first["known_before"] == []  # the premise: matplotlib's list had no CJK font
    assert first["cjk"] and first["cjk"][0] in first["families"]
    assert all(first["drawn"][c] for c in HAN), first["drawn"]
    assert first["boxes"] == []
    assert not [w for w in first["warnings"] if w[0] == "MissingFontWarning"
                or "Glyph" in w[1]], first["warnings"]
    assert [m for m in first["logs"] if "predates" in m and str(_cache(folder)) in m]
    assert "CJK" in _cache(folder).read_text()

    second = _child(folder, usage_log, tmp_path / "second.png")
    assert second["known_before"] and not [m for m in second["logs"] if "predates" in m]
    assert second["families"] == first["families"] and second["boxes"] == []


def test_with_no_cjk_font_one_true_warning_says_what_to_install(usage_log, tmp_path):
    """No font on the machine covers Chinese (matplotlib told to ignore the system's fonts),
    and one font is *named* like a CJK font but has no CJK glyph: it is not taken for one; one
    MissingFontWarning names the characters and the package to install; matplotlib's own
    missing-glyph warnings are not silenced; the glyph checks see the boxes."""
    folder = tmp_path / "mpl"
    got = _child(folder, usage_log, tmp_path / "boxes.png", str(tmp_path / "fake.ttf"),
                 MPL_IGNORE_SYSTEM_FONTS="1")
    if got["system_fonts"]:
        pytest.skip("this matplotlib has no MPL_IGNORE_SYSTEM_FONTS")
    assert got["known_before"] == [] and got["cjk"] == []
    assert "SimHei" not in got["families"]
    missing = [m for kind, m in got["warnings"] if kind == "MissingFontWarning"]
    assert len(missing) == 1, got["warnings"]
    assert "apt install fonts-noto-cjk" in missing[0] and "智" in missing[0]
    assert [m for _, m in got["warnings"] if "Glyph" in m and "missing" in m]
    assert [c for c in HAN if got["drawn"][c] is None] == list(HAN)
    assert got["boxes"] == list(HAN)
    assert (tmp_path / "boxes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
