"""``qwen-meter serve``: a metering gateway in front of DashScope for any HTTP client.

OpenAI-compatible and native DashScope endpoints are relayed byte for byte (streams chunk by
chunk) through the same pipeline as the client meter — pre-flight, budgets per virtual key and
global, RPM / TPM limits, usage records with the tenant — with state in a shared store so that
many replicas enforce one set of limits. Needs the ``gateway`` extra
(``pip install ".[gateway]"`` from a clone); importing :mod:`qwen_meter` does not load it.
"""

from __future__ import annotations

from .app import Gateway, create_app
from .config import GatewayConfig, load_config

#: ``qwen_meter.create_gateway(config)``: the ASGI app (the embedded default without config).
create_gateway = create_app

__all__ = ["Gateway", "GatewayConfig", "create_app", "create_gateway", "load_config"]
