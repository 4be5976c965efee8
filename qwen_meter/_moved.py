"""The module paths of 0.2 that moved in 0.3, kept importable for one release.

0.3 regrouped the flat package into layers (``base``, ``tokens``, ``catalogue``, ``billing``,
``limits``, ``meter`` and the faces). Code that imports an old path — ``qwen_meter.budget``,
``qwen_meter.store.redis``, ``qwen_meter.log`` … — gets the module at its new place, with a
``DeprecationWarning`` naming it. Names re-exported by ``qwen_meter`` itself never moved.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from .base.errors import MovedWarning

#: old module path (after ``qwen_meter.``) -> new one
MOVED = {
    "errors": "base.errors", "validate": "base.checks", "_data": "base.data",
    "catalogue_store": "catalogue.installed", "catalogue_diff": "catalogue.diff",
    "regions": "catalogue.regions", "tokens.index": "billing.index",
    "counting": "billing.counting", "request": "billing.request", "usage": "billing.usage",
    "pricing": "billing.pricing", "preflight": "billing.preflight", "batch": "billing.batch",
    "unlisted": "billing.unlisted", "limiter": "limits.limiter", "budget": "limits.budget",
    "store": "limits.store", "store.base": "limits.store.base",
    "store.memory": "limits.store.memory", "store.redis": "limits.store.redis",
    "store.sqlite": "limits.store.sqlite", "steps": "meter.steps",
    "observers": "meter.observers", "attribution": "meter.attribution", "log": "meter.log",
    "server_errors": "meter.server_errors", "sse": "meter.sse",
    "cli_catalogue": "cli.catalogue", "cli_estimate_batch": "cli.estimate_batch",
    "cli_export": "cli.export", "cli_log": "cli.log", "cli_report": "cli.report",
    "cli_serve": "cli.serve",
}
_PREFIX = "qwen_meter."


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the module at its new place is already executed


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds each old path of :data:`MOVED` and hands back the module at its new path."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX):
            return None
        new = MOVED.get(fullname[len(_PREFIX):])
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {_PREFIX}{new} in qwen_meter 0.3; the old path "
                      "goes in 0.4", MovedWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(_PREFIX + new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())  # before a stale folder of an old install
