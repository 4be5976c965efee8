"""``qwen-meter serve``: run the metering gateway; ``serve keys add|list|revoke``: its keys."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..base.errors import ConfigurationError

DEFAULT_CONFIG = "qwen-meter-gateway.yaml"


def register(sub: Any) -> None:
    """Add ``serve`` (and ``serve keys ...``) to the command line."""
    serve = sub.add_parser(
        "serve", help="run the metering gateway (OpenAI-compatible + native DashScope)",
        description="A reverse proxy in front of DashScope that meters, limits and logs every "
                    "call. Without --config: memory store, 127.0.0.1 only, no virtual keys "
                    "(the client's Authorization is forwarded).")
    serve.add_argument("--config", help="gateway config (YAML or JSON)")
    serve.add_argument("--upstream", help="upstream base URL "
                                          "(default https://dashscope.aliyuncs.com)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080; 0 = any free port)")
    serve.add_argument("--log", help="usage log of this replica (.jsonl or .db)")
    serve.add_argument("--workers", type=int, default=1,
                       help="uvicorn worker processes (share limits through a redis:// store)")
    serve.set_defaults(run=_serve)
    keys = serve.add_subparsers(dest="serve_command").add_parser(
        "keys", help="manage virtual keys (in the ledger the config names, else in the file)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    add = actions.add_parser("add", help="create a key (printed once; only its hash is kept)")
    add.add_argument("name", help="the key's name (its tenant)")
    add.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    add.add_argument("--user", help="the user the key's calls are attributed to")
    add.add_argument("--team", help="the team (its calls get the tag team=TEAM)")
    add.add_argument("--tag", action="append", default=[], help="a tag, e.g. team=search")
    add.add_argument("--upstream", help="a named upstream of the config (default: default)")
    add.add_argument("--rpm", type=int, help="requests per minute, all models together")
    add.add_argument("--tpm", type=int, help="tokens per minute, all models together")
    add.add_argument("--model", action="append", help="an allowed model (default: all)")
    add.add_argument("--budget", action="append", default=[], metavar="AMOUNT[/PERIOD]",
                     help="a spending limit, e.g. '20 CNY/day' (hour, day, week, month)")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(run=_keys_add)
    listing = actions.add_parser("list", help="list keys (names, prefixes, limits)")
    listing.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key (running gateways answer 401 "
                                               "to it within 2 seconds)")
    revoke.add_argument("name", help="the name of the key to revoke")
    revoke.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    revoke.set_defaults(run=_keys_revoke)


def _serve(args: argparse.Namespace) -> int:
    try:
        from ..gateway.server import serve
    except ImportError as exc:
        raise ConfigurationError(f'the gateway needs its extra: pip install ".[gateway]" '
                                 f"({exc})") from None
    serve({"config_file": args.config, "upstream": args.upstream, "host": args.host,
           "port": args.port, "log": args.log}, workers=args.workers)
    return 0


def _budget(text: str) -> dict[str, Any]:
    amount, _, period = text.partition("/")
    entry: dict[str, Any] = {"limit": amount.strip()}
    if period.strip():
        entry["per"] = period.strip()
    return entry


def _key_row(key: Any) -> dict[str, Any]:
    return {"name": key.name, "prefix": key.prefix, "user": key.user, "tags": list(key.tags),
            "upstream": key.upstream, "rpm": key.rpm, "tpm": key.tpm,
            "models": list(key.models) if key.models else None,
            "budgets": [f"{b.limit}" + (f"/{b.per}" if b.per else "") for b in key.budgets],
            "revoked": key.revoked, "created": key.created}


def _keys_add(args: argparse.Namespace) -> int:
    ledger = _ledger(args.config)
    if ledger is not None:
        try:
            key, row = _ledger_add(args, ledger)
        finally:
            ledger.close()
        where = f"the ledger of {args.config}"
    else:
        from ..gateway.keys import add_key

        if args.team:
            args.tag = [*args.tag, f"team={args.team}"]
        added = add_key(args.config, args.name, user=args.user, tags=args.tag,
                        upstream=args.upstream, rpm=args.rpm, tpm=args.tpm, models=args.model,
                        budgets=[_budget(b) for b in args.budget])
        key, row, where = added.key, _key_row(added.config), args.config
    if args.json:
        print(json.dumps({"key": key, **row}, ensure_ascii=False))
    else:
        print(key)
        print(f"(key {args.name!r} added to {where}; it is shown only now; running gateways "
              "accept it within 2 seconds)")
    return 0


def _ledger(config_file: str) -> Any:
    """The ledger the config file names (None: no ledger, or no file yet: keys in the file)."""
    import os

    if not os.path.exists(config_file):
        return None
    from ..gateway.config import load_config

    config = load_config(config_file)
    if not config.ledger:
        return None
    from ..gateway.fleet import open_ledger

    return open_ledger(config.ledger)


def _ledger_add(args: argparse.Namespace, ledger: Any) -> tuple[str, dict[str, Any]]:
    from ..gateway.admin_fields import BadField, key_row, new_entry
    from ..gateway.config import load_config

    body: dict[str, Any] = {"name": args.name}
    for field, value in (("user", args.user), ("team", args.team), ("rpm", args.rpm),
                         ("tpm", args.tpm), ("models", args.model), ("upstream", args.upstream)):
        if value is not None:
            body[field] = value
    if args.tag:
        body["tags"] = args.tag
    if args.budget:
        body["budgets"] = args.budget
    try:
        secret, entry = new_entry(body, load_config(args.config).upstreams)
    except BadField as exc:
        option = {"budgets": "--budget", "tags": "--tag", "models": "--model"}.get(
            (exc.field or "").split("[")[0], f"--{exc.field}")
        raise ConfigurationError(f"{option}: {exc.message}") from None
    return secret, key_row(ledger.create_key(entry))


def _keys_list(args: argparse.Namespace) -> int:
    ledger = _ledger(args.config)
    if ledger is not None:
        from ..gateway.admin_fields import key_row

        try:
            rows = [_ledger_row(key_row(k)) for k in ledger.list_keys()]
        finally:
            ledger.close()
    else:
        from ..gateway.keys import list_keys

        rows = [_key_row(k) for k in list_keys(args.config)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        limits = ", ".join(f"{k} {row[k]}" for k in ("rpm", "tpm") if row[k])
        state = "revoked" if row["revoked"] else "active"
        print(f"{row['name']:<20} {row['prefix']}…  {state:<8} {limits or 'no rate limits'}"
              f"{'; budgets ' + ', '.join(row['budgets']) if row['budgets'] else ''}")
    return 0


def _ledger_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "budgets": [b["limit"] + (f"/{b['per']}" if b["per"] else "")
                               for b in row["budgets"]]}


def _keys_revoke(args: argparse.Namespace) -> int:
    ledger = _ledger(args.config)
    if ledger is not None:
        try:
            ledger.revoke_key(args.name)
        finally:
            ledger.close()
        where = f"the ledger of {args.config}"
    else:
        from ..gateway.keys import revoke_key

        revoke_key(args.config, args.name)
        where = args.config
    # Gateways follow the ledger (or re-read their file's keys) within 2 seconds.
    print(f"key {args.name!r} revoked in {where}; running gateways answer 401 to it within "
          "2 seconds")
    return 0
