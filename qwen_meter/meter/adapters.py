"""How :meth:`Meter.wrap` reaches the client adapters without importing them.

The adapters (``qwen_meter.clients``) sit above the meter: they import it, so the meter may
not import them. The package root installs a loader here instead, and the adapters are
imported on the first ``wrap`` — never at ``import qwen_meter``, since they pull in httpx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..base.errors import ConfigurationError

if TYPE_CHECKING:
    from .pipeline import Meter


class ClientAdapters(Protocol):
    """What the meter needs of the adapters' package."""

    def wrap(self, meter: Meter, client: Any) -> Any: ...

    def metered_client(self, meter: Meter, **kwargs: Any) -> Any: ...

    def metered_async_client(self, meter: Meter, **kwargs: Any) -> Any: ...


_loader: Callable[[], ClientAdapters] | None = None


def set_adapter_loader(loader: Callable[[], ClientAdapters]) -> None:
    """Install the function that imports and returns the client adapters."""
    global _loader
    _loader = loader


def client_adapters() -> ClientAdapters:
    """The client adapters (imported on first use through the installed loader)."""
    if _loader is None:
        raise ConfigurationError("no client adapters are registered: import qwen_meter first")
    return _loader()
