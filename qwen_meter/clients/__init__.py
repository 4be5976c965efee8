"""Adapters that meter the clients people already use, keeping their interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..meter import Meter


def wrap(meter: Meter, client: Any) -> Any:
    """The metered counterpart of ``client`` (see :meth:`qwen_meter.Meter.wrap`)."""
    from ..log import register_client_secrets
    from ..meter import UnsupportedClient

    register_client_secrets(client)  # its key is masked in every record from now on
    module = type(client).__module__ if not isinstance(client, type) else client.__module__
    name = client.__name__ if isinstance(client, type) else type(client).__name__
    if module.startswith("openai") and name in ("OpenAI", "AsyncOpenAI"):
        from .openai import wrap_openai

        return wrap_openai(meter, client)
    if module.startswith("dashscope") and name in ("Generation", "AioGeneration"):
        from .dashscope import MeteredAioGeneration, MeteredGeneration

        return (MeteredGeneration if name == "Generation" else MeteredAioGeneration)(meter,
                                                                                     client)
    if module.startswith("httpx") and name in ("Client", "AsyncClient"):
        from .httpx import wrap_httpx

        return wrap_httpx(meter, client)
    raise UnsupportedClient(
        f"cannot meter a {module}.{name}; supported: openai.OpenAI / AsyncOpenAI, "
        "dashscope.Generation / AioGeneration, httpx.Client / AsyncClient "
        "(LangChain: pass meter.httpx_client() as http_client)")
