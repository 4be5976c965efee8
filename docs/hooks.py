"""MkDocs hooks: pages generated from the repository, so they cannot drift from it.

- ``cli.md``: the ``--help`` of every ``qwen-meter`` command, from the real argument parser;
- ``changelog.md`` and ``zh-CN.md``: ``CHANGELOG.md`` and ``README.zh-CN.md`` from the
  repository root (links between them rewritten to site pages).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def _cli_page() -> str:
    from qwen_meter.cli.main import build_parser

    parser = build_parser()
    lines = ["# Command line", "",
             "Every command of `qwen-meter`, as its `--help` prints it.", ""]

    def walk(p: argparse.ArgumentParser, title: str) -> None:
        lines.extend([f"## `{title}`", "", "```text", p.format_help().rstrip(), "```", ""])
        for action in p._actions:  # argparse keeps subcommands only here
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{title} {name}")

    walk(parser, "qwen-meter")
    return "\n".join(lines)


def _root_page(name: str) -> str:
    text = (ROOT / name).read_text(encoding="utf-8")
    return (text.replace("(README.md)", "(index.md)").replace("(README.zh-CN.md)", "(zh-CN.md)")
            .replace("(CHANGELOG.md)", "(changelog.md)"))


def on_files(files: Files, config: Any) -> Files:
    for page, make in (("cli.md", _cli_page),
                       ("changelog.md", lambda: _root_page("CHANGELOG.md")),
                       ("zh-CN.md", lambda: _root_page("README.zh-CN.md"))):
        files.append(File.generated(config, page, content=make()))
    return files
