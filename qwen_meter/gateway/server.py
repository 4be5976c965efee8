"""Running the gateway under uvicorn: one process, or several workers on one socket.

Workers are separate processes, so each builds its own app from the same settings (passed in
an environment variable) through :func:`app_from_environment`; with a ``redis://`` store they
share one set of budgets and limits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from ..base.words import plural
from .app import Gateway
from .config import GatewayConfig, UpstreamConfig, default_config, load_config

_SETTINGS = "QWEN_METER_GATEWAY_SETTINGS"


def resolve_config(config_file: str | None = None, *, upstream: str | None = None,
                   host: str | None = None, port: int | None = None,
                   log: str | None = None) -> GatewayConfig:
    """The config file (or the embedded default) with the command line's overrides."""
    config = load_config(config_file) if config_file else default_config(upstream)
    changes: dict[str, Any] = {}
    if upstream and config_file:
        base = config.upstreams["default"]
        changes["upstreams"] = {**config.upstreams, "default": UpstreamConfig(
            base.name, upstream.rstrip("/"), base.region, base.api_key_env, base.api_key_file)}
    if host:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if log:
        changes["log"] = log
    return dataclasses.replace(config, **changes) if changes else config


def app_from_environment() -> Gateway:
    """The app factory uvicorn workers call (settings from the parent's environment)."""
    settings = json.loads(os.environ[_SETTINGS])
    return Gateway(resolve_config(**settings))


def serve(settings: dict[str, Any], *, workers: int = 1) -> None:
    """Build (validating everything), then serve until SIGINT / SIGTERM."""
    import uvicorn

    from .protocols import json_protocol

    config = resolve_config(**settings)
    app = Gateway(config)  # fails here, before binding, on any configuration mistake
    where = f"http://{config.host}:{config.port}"
    keys = plural(len(app.tenants.by_name), "virtual key") if config.virtual_keys else \
        "no virtual keys (clients' Authorization forwarded)"
    print(f"qwen-meter gateway on {where} -> {config.upstreams['default'].url}; "
          f"store {config.store.split('@')[-1]}; {keys}", file=sys.stderr, flush=True)
    if config.ledger:
        from ..ledger import mask_url

        admin = "admin API on /admin" if config.admin_token_env else "no admin API"
        print(f"qwen-meter gateway: ledger {mask_url(config.ledger)}; {admin}",
              file=sys.stderr, flush=True)
    options: dict[str, Any] = {"host": config.host, "port": config.port,
                               "log_level": "warning", "access_log": False,
                               "timeout_graceful_shutdown": config.shutdown_timeout,
                               "lifespan": "on",
                               # uvicorn's own 400s (unparsable requests) in JSON too
                               "http": json_protocol()}
    if workers > 1:
        if config.store.startswith("memory:"):
            print("qwen-meter gateway: warning: each worker keeps its own limits and budgets "
                  "with a memory store; use a redis:// (or sqlite:///) store to share them",
                  file=sys.stderr, flush=True)
        app.tenants.close()
        os.environ[_SETTINGS] = json.dumps(settings)
        uvicorn.run("qwen_meter.gateway.server:app_from_environment", factory=True,
                    workers=workers, **options)
        return
    uvicorn.run(app, **options)
