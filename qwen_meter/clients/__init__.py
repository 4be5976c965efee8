"""Adapters that meter the clients people already use, keeping their interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..meter.pipeline import Meter

_DASHSCOPE = {"Generation": "MeteredGeneration", "AioGeneration": "MeteredAioGeneration",
              "MultiModalConversation": "MeteredMultiModalConversation",
              "AioMultiModalConversation": "MeteredAioMultiModalConversation",
              "TextEmbedding": "MeteredTextEmbedding"}


def wrap(meter: Meter, client: Any) -> Any:
    """The metered counterpart of ``client`` (see :meth:`qwen_meter.Meter.wrap`)."""
    from ..meter.log import register_client_secrets
    from ..meter.pipeline import UnsupportedClient

    register_client_secrets(client)  # its key is masked in every record from now on
    module = type(client).__module__ if not isinstance(client, type) else client.__module__
    name = client.__name__ if isinstance(client, type) else type(client).__name__
    if module.startswith("openai") and name in ("OpenAI", "AsyncOpenAI"):
        from .openai import wrap_openai

        return wrap_openai(meter, client)
    if module.startswith("dashscope") and name in _DASHSCOPE:
        from . import dashscope

        return getattr(dashscope, _DASHSCOPE[name])(meter, client)
    if module.split(".")[0] in ("httpx", "httpx2") and name in ("Client", "AsyncClient"):
        from .httpx import wrap_httpx

        return wrap_httpx(meter, client)
    raise UnsupportedClient(
        f"cannot meter a {module}.{name}; supported: openai.OpenAI / AsyncOpenAI, "
        f"dashscope.{' / '.join(_DASHSCOPE)}, httpx / httpx2 Client / AsyncClient "
        "(LangChain: pass meter.httpx_client() as http_client)")


def metered_client(meter: Meter, **kwargs: Any) -> Any:
    """A metered ``httpx.Client`` (see :meth:`qwen_meter.Meter.httpx_client`)."""
    from .httpx import metered_client as make

    return make(meter, **kwargs)


def metered_async_client(meter: Meter, **kwargs: Any) -> Any:
    """A metered ``httpx.AsyncClient`` (see :meth:`qwen_meter.Meter.httpx_async_client`)."""
    from .httpx import metered_async_client as make

    return make(meter, **kwargs)
