"""The dashboard page's files as shipped (no browser needed): the vendored charting library is
the pinned, checksummed release with its licence, nothing is loaded from the network, data
never goes through an HTML parser, and both languages say everything."""

from __future__ import annotations

import hashlib
import re

from qwen_meter.base.data import data_dir

PAGE = data_dir() / "dashboard"
VENDOR = PAGE / "vendor" / "echarts"


def test_echarts_is_the_pinned_release_with_its_licence() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    version = re.search(r"Apache ECharts (\d+\.\d+\.\d+)", readme)
    digest = re.search(r"`echarts\.min\.js` sha256: `([0-9a-f]{64})`", readme)
    assert version and digest, "the README names the version and the file's sha256"
    body = (VENDOR / "echarts.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == digest.group(1)
    assert f'version:"{version.group(1)}"'.encode() in body
    assert f"npm pack echarts@{version.group(1)}" in readme
    assert "Apache License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")
    assert "Apache ECharts" in (VENDOR / "NOTICE").read_text(encoding="utf-8")


def _scripts() -> dict[str, str]:
    """The page's own scripts (not the vendored library), by file name."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(PAGE.glob("*.js"))}


def _page_files() -> dict[str, str]:
    return {**_scripts(), **{p.name: p.read_text(encoding="utf-8")
                             for p in (PAGE / "index.html", PAGE / "app.css")}}


def test_the_page_loads_nothing_from_the_network() -> None:
    html = (PAGE / "index.html").read_text(encoding="utf-8")
    for name, text in _page_files().items():
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), name
        assert "@import" not in text, name
    # every asset the page names is in the package, under assets/ (relative: /ui works too)
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("assets/") for r in refs), refs
    for ref in refs:
        assert (PAGE / ref.removeprefix("assets/")).is_file(), ref


def test_data_never_reaches_an_html_parser() -> None:
    scripts = _scripts()
    assert {"i18n.js", "core.js", "app.js"} <= set(scripts)
    for name, code in scripts.items():
        code = re.sub(r"(^|\s)//.*$", "", code, flags=re.MULTILINE)  # comments may name them
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in code, f"{name} uses {sink}"
        # the scripts import nothing, so the HTML report can inline them as they are
        assert not re.search(r"^\s*(?:import|export)\b", code, re.MULTILINE), name


def test_the_scripts_are_ordered_parts_of_one_namespace() -> None:
    """index.html loads every script once, the words first and the start last; each is a
    short file saying its job first, shares only ``globalThis.QM``, and app.js's list of the
    parts it checks for is index.html's order."""
    html = (PAGE / "index.html").read_text(encoding="utf-8")
    loaded = re.findall(r'<script type="module" src="assets/([a-z0-9_-]+\.js)"></script>', html)
    scripts = _scripts()
    assert sorted(loaded) == sorted(scripts) and len(set(loaded)) == len(loaded)
    assert loaded[0] == "i18n.js" and loaded[-1] == "app.js"
    assert html.index("echarts.min.js") < html.index("assets/i18n.js")
    for name, code in scripts.items():
        assert len(code.splitlines()) <= 400, name
        assert code.startswith("// qwen-meter dashboard"), name
        code_only = re.sub(r"(^|\s)//.*$", "", code, flags=re.MULTILINE)
        assert set(re.findall(r"globalThis\.(\w+)", code_only)) in ({"QM"}, {"QM", "echarts"})
        assert not re.search(r"\bwindow\.\w+\s*=[^=]", code_only), name
        part = name.removesuffix(".js")
        assert f'QM.parts = [...(QM.parts || []), "{part}"];' in code, name
    checked = re.search(r"const PARTS = \[(.*?)\];", scripts["app.js"])
    assert checked and re.findall(r'"([a-z0-9_-]+)"', checked.group(1)) == \
        [n.removesuffix(".js") for n in loaded[:-1]]


def test_both_languages_have_every_word() -> None:
    text = (PAGE / "i18n.js").read_text(encoding="utf-8")
    blocks = re.findall(r"const (en|zh) = \{(.*?)\n\};", text, re.DOTALL)
    keys = {lang: set(re.findall(r"(?:^|[\s,])([a-z_0-9]+): \"", body)) for lang, body in blocks}
    assert set(keys) == {"en", "zh"} and len(keys["en"]) > 50
    assert keys["en"] == keys["zh"]
    code = "\n".join(_scripts().values())
    used = set(re.findall(r"\bt\(\"([a-z_0-9]+)\"", code))
    assert used and used <= keys["en"], used - keys["en"]
    # keys built from a prefix: every view, dimension, problem kind and metric has its word
    for prefix, names in {
        "view_": ("overview", "series", "top", "calls", "problems"),
        "dim_": ("model", "key", "user", "tag", "region", "status", "endpoint", "none"),
        "kind_": ("refused", "error", "estimated", "cancelled", "lost"),
        "metric_": ("cost", "tokens", "calls"),
    }.items():
        for name in names:
            assert prefix + name in keys["en"], prefix + name
