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


def _page_files() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8")
            for p in (PAGE / "index.html", PAGE / "app.js", PAGE / "app.css", PAGE / "i18n.js")}


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
    for name in ("app.js", "i18n.js"):
        code = (PAGE / name).read_text(encoding="utf-8")
        code = re.sub(r"(^|\s)//.*$", "", code, flags=re.MULTILINE)  # comments may name them
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in code, f"{name} uses {sink}"
    # the scripts import nothing, so the HTML report can inline them as they are
    app = (PAGE / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(?:import|export)\b", app, re.MULTILINE)


def test_both_languages_have_every_word() -> None:
    text = (PAGE / "i18n.js").read_text(encoding="utf-8")
    blocks = re.findall(r"const (en|zh) = \{(.*?)\n\};", text, re.DOTALL)
    keys = {lang: set(re.findall(r"(?:^|[\s,])([a-z_0-9]+): \"", body)) for lang, body in blocks}
    assert set(keys) == {"en", "zh"} and len(keys["en"]) > 50
    assert keys["en"] == keys["zh"]
    app = (PAGE / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\bt\(\"([a-z_0-9]+)\"", app))
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
