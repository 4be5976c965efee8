"""MkDocs hooks: pages generated from the repository, so they cannot drift from it.

- ``cli.md`` and ``zh/cli.md``: the ``--help`` of every ``qwen-meter`` command, from the real
  argument parser (the help text is the same in both; only the title and intro are Chinese);
- ``changelog.md`` and ``zh/changelog.md``: ``CHANGELOG.md`` from the repository root (the
  changelog is kept in English; the Chinese page says so above it);
- ``zh-CN.md``: ``README.zh-CN.md`` from the repository root.

Links between the root files are rewritten to site pages, and the README's links into
``docs/`` to the pages themselves, so they resolve on the site as they do on GitHub.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def _cli_page(title: str, intro: str) -> str:
    from qwen_meter.cli import build_parser

    parser = build_parser()
    lines = [f"# {title}", "", intro, ""]

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        lines.extend([f"## `{name}`", "", "```text", p.format_help().rstrip(), "```", ""])
        for action in p._actions:  # argparse keeps subcommands only here
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(parser, "qwen-meter")
    return "\n".join(lines)


def _root_page(name: str, prefix: str = "") -> str:
    """A root file as a page at the site root; ``prefix`` (e.g. ``../``) for a page one
    folder down."""
    text = (ROOT / name).read_text(encoding="utf-8")
    return (text.replace("(README.md)", f"({prefix}index.md)")
            .replace("(README.zh-CN.md)", f"({prefix}zh-CN.md)")
            .replace("(CHANGELOG.md)", f"({prefix}changelog.md)")
            .replace("(docs/", f"({prefix}"))


def _zh_changelog() -> str:
    text = _root_page("CHANGELOG.md", prefix="../")
    # The file's own first line is "# Changelog"; the Chinese page keeps the entries in English.
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return ("# 更新记录\n\n更新记录只用英文维护，以下为 `CHANGELOG.md` 原文。\n" + body)


#: The API reference's section titles in Chinese (the docstrings themselves are English).
_ZH_SECTIONS = {
    "# API reference": "# API 参考",
    "## Counting": "## 计数",
    "## Pre-flight": "## 发送前检查",
    "## Prices": "## 价格",
    "## Catalogue": "## 模型目录",
    "## Budgets and rate limits": "## 预算与限流",
    "## The meter": "## 计量器（Meter）",
    "## Gateway": "## 网关",
    "## Integrations": "## 集成",
    "## Usage log": "## 用量日志",
    "## Reports": "## 报表",
    "## Errors": "## 错误",
}


def _zh_reference() -> str:
    """The API reference with Chinese titles: one source (reference.md), so the two pages
    always document the same names."""
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    _, _, body = text.partition("\n## ")
    lines = ["# API 参考", "",
             "以下所有名称都可以直接从 `qwen_meter` 导入（`import qwen_meter as qm`）；"
             "较重的依赖只在用到相应功能时才加载。内容由代码中的文档字符串生成，"
             "文档字符串为英文原文。", ""]
    for line in ("## " + body).splitlines():
        lines.append(_ZH_SECTIONS.get(line, line))
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    pages = (
        ("cli.md", lambda: _cli_page("Command line",
                                     "Every command of `qwen-meter`, as its `--help` prints it.")),
        ("zh/cli.md", lambda: _cli_page(
            "命令行", "`qwen-meter` 的每个命令及其 `--help` 输出（帮助文本为英文原文）。")),
        ("changelog.md", lambda: _root_page("CHANGELOG.md")),
        ("zh/changelog.md", _zh_changelog),
        ("zh-CN.md", lambda: _root_page("README.zh-CN.md")),
        ("zh/reference.md", _zh_reference),
    )
    for page, make in pages:
        files.append(File.generated(config, page, content=make()))
    return files
