"""The metered call: the pipeline every client adapter, the gateway and the integrations run.

A call is planned (count, check, estimate), held (budget reservation, limiter permit), sent by
the caller's own client, and settled into exactly one usage record; the steps are plain values
and generators that a sync and an async driver perform. Observers, attribution (user / tags
for the current context), the usage log and DashScope's error classes live here too.

May use: ``base``, ``tokens``, ``catalogue``, ``billing``, ``limits``. Never a face: client
adapters register themselves (see ``Meter.wrap``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Loaded on first use: `import qwen_meter` imports this package (for the adapter registry)
# and must not pull in the whole pipeline with it.
_EXPORTS = {
    "Meter": ".pipeline", "UnsupportedClient": ".pipeline", "MeteredCall": ".call",
    "Calibration": ".calibration", "request_shape": ".calibration",
    "default_log_path": ".config", "DEFAULT_LOG": ".config", "UNPRICED_POLICIES": ".config",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)


__all__ = sorted(_EXPORTS)
