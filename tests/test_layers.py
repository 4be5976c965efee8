"""The package's shape (docs/architecture.md): layers that import only downwards (the
import-linter contract in pyproject.toml), no import cycle, rooms of a livable size, a small
root, and a package docstring that says what each subpackage is for.

Each check reads the real tree; test_a_broken_layer_is_caught plants an upward import in a
copy of the package to show the contract check can fail."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qwen_meter"
MAX_LINES = 400
MAX_ROOT_MODULES = 8  # besides __init__ and __main__


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_layer_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and " KEPT" in done.stdout


def test_a_broken_layer_is_caught(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(PACKAGE, tmp_path / "qwen_meter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    chat = tmp_path / "qwen_meter" / "tokens" / "chat.py"
    chat.write_text(chat.read_text(encoding="utf-8") + "\nfrom ..meter import pipeline  # upward\n",
                    encoding="utf-8")
    done = _lint(tmp_path)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert "qwen_meter.tokens.chat -> qwen_meter.meter.pipeline" in done.stdout


def _cycles(graph: object) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)  # type: ignore[attr-defined]
    imports = graph.find_modules_directly_imported_by  # type: ignore[attr-defined]
    edges = {m: sorted(set(imports(m)) & set(modules)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_cycle_at_run_time() -> None:
    # Imports inside functions count; imports only for type checkers do not run.
    graph = grimp.build_graph("qwen_meter", exclude_type_checking_imports=True, cache_dir=None)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    class Graph:
        modules = frozenset({"a", "b", "c", "d"})

        @staticmethod
        def find_modules_directly_imported_by(m: str) -> set[str]:
            return {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}[m]

    assert _cycles(Graph()) == [["a", "b", "c"]]


def test_no_module_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_a_small_root() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py")
                     if p.name not in ("__init__.py", "__main__.py"))
    assert len(modules) <= MAX_ROOT_MODULES, modules


def test_every_subpackage_says_what_it_is_for() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 8, f"{init.relative_to(ROOT)} has no docstring"
