"""``qwen-meter catalogue``: show, validate FILE, diff FILE|URL, update --from FILE|URL, rollback.

An update fetches a catalogue, validates it whole, shows what changes, and installs it only
after a confirmation (``--yes`` or an interactive "y"): never silently. The bundled catalogue
is never modified; ``rollback`` puts the previously installed file back.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..catalogue import installed as store
from ..catalogue.core import Catalogue, default_catalogue


def _load_source(source: str) -> tuple[bytes, Catalogue]:
    data = store.fetch(source)
    return data, Catalogue.from_bytes(data, source)


def _in_use() -> dict[str, Any]:
    installed = store.installed_path()
    cat = default_catalogue()
    return {"in_use": "installed" if installed.exists() else "bundled",
            "file": cat.files[0], "overrides": list(cat.files[1:]),
            "installed_path": str(installed),
            "previous": str(store.previous_path()) if store.previous_path().exists() else None,
            "models": len(cat), "regions": list(cat.regions)}


def _show(args: argparse.Namespace) -> int:
    info = _in_use()
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    print(f"catalogue in use: {info['in_use']} — {info['file']}")
    for extra in info["overrides"]:
        print(f"  override: {extra}")
    print(f"  {info['models']} models; regions: {', '.join(info['regions'])}")
    print(f"  installed catalogue path: {info['installed_path']}"
          + ("" if info["in_use"] == "installed" else " (none installed)"))
    if info["previous"]:
        print(f"  previous (for rollback): {info['previous']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    _, cat = _load_source(args.file)
    print(f"{args.file}: valid — {len(cat)} models, regions {', '.join(cat.regions)}")
    return 0


def _print_diff(lines: list[str], label: str) -> None:
    if not lines:
        print(f"no changes against the catalogue in use ({label})")
        return
    print(f"changes against the catalogue in use ({label}):")
    for line in lines:
        print(f"  {line}")


def _diff(args: argparse.Namespace) -> int:
    from ..catalogue.diff import diff_catalogues

    _, new = _load_source(args.source)
    lines = diff_catalogues(default_catalogue(), new)
    if args.json:
        print(json.dumps({"changes": lines}, ensure_ascii=False))
    else:
        _print_diff(lines, _in_use()["in_use"])
    return 0


def _update(args: argparse.Namespace) -> int:
    from ..catalogue.diff import diff_catalogues

    data, new = _load_source(args.source)  # refused whole here if anything is wrong
    lines = diff_catalogues(default_catalogue(), new)
    _print_diff(lines, _in_use()["in_use"])
    if not args.yes:
        if not sys.stdin.isatty():
            print("not installed: pass --yes to install without a prompt", file=sys.stderr)
            return 1
        answer = input(f"install {args.source} as your catalogue? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not installed")
            return 1
    path = store.install(data)
    print(f"installed {len(new)} models to {path} (the previous one is kept for rollback)")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    path = store.rollback()
    if path is None:
        print("rolled back: the installed catalogue is removed; the bundled one is in use")
        return 0
    cat = Catalogue.load(path)
    print(f"rolled back: {path} now holds the previous catalogue ({len(cat)} models)")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``catalogue`` command to the CLI's subparsers."""
    command = subparsers.add_parser(
        "catalogue", help="show, validate, diff, update or roll back the model catalogue",
        description="Get next month's models without upgrading qwen_meter: validate a newer "
                    "catalogue, see what changes, install it in your config folder "
                    f"(${store.CONFIG_ENV} overrides where), roll back if needed.")
    sub = command.add_subparsers(dest="catalogue_command", required=True)
    show = sub.add_parser("show", help="which catalogue is in use (bundled or installed)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=_show)
    validate = sub.add_parser("validate", help="validate a catalogue file or URL fully")
    validate.add_argument("file", help="a catalogue YAML file or http(s) URL")
    validate.set_defaults(run=_validate)
    diff = sub.add_parser("diff", help="what a catalogue file or URL would change")
    diff.add_argument("source", metavar="FILE|URL",
                      help="the catalogue to compare with the one in use")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(run=_diff)
    update = sub.add_parser("update", help="fetch, validate, show and install a catalogue")
    update.add_argument("--from", dest="source", required=True, metavar="FILE|URL",
                        help="where the newer catalogue is (a file or an http(s) URL)")
    update.add_argument("--yes", action="store_true", help="install without asking")
    update.set_defaults(run=_update)
    rollback = sub.add_parser("rollback", help="put the previously installed catalogue back")
    rollback.set_defaults(run=_rollback)
