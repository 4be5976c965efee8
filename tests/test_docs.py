"""The documentation site builds in strict mode (no broken links, no missing references),
and the Chinese README keeps the same two commands as the English one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _commands(readme: str) -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / readme).read_text(encoding="utf-8"))[:2]


def test_chinese_readme_has_the_same_two_commands() -> None:
    assert _commands("README.zh-CN.md") == _commands("README.md")
    assert "README.zh-CN.md" in (ROOT / "README.md").read_text(encoding="utf-8")[:300]
    assert "README.md" in (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")[:300]


def test_site_builds_strictly(tmp_path: Path) -> None:
    if os.environ.get("QWEN_METER_REQUIRE_DOCS") is None:
        pytest.importorskip("mkdocs")
        pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for name in ("count_messages", "estimate_cost", "Budget", "RateLimiter", "Meter"):
        assert name in reference
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "qwen-meter count" in cli and "qwen-meter report" in cli
    assert (site / "zh-CN" / "index.html").is_file()


def test_version_is_one_and_in_the_changelog() -> None:
    import qwen_meter as qm

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == qm.__version__
    assert f"## [{qm.__version__}] - " in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
