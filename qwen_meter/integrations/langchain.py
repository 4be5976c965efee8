"""LangChain: its tags, metadata and run ids on qwen_meter's usage records; ChatTongyi metered.

    meter = qm.Meter()
    handler = QwenMeterCallbackHandler()
    llm = ChatOpenAI(model="qwen-plus", base_url=..., http_client=meter.httpx_client(),
                     callbacks=[handler])
    llm.invoke("你好", config={"tags": ["feature=search"], "metadata": {"session": "42"}})

How the two meet: LangChain calls ``on_chat_model_start`` / ``on_llm_start`` in the context
the model then sends its HTTP request from — the same thread for ``invoke`` / ``stream`` /
``batch`` (one thread per input), and, because the handler is ``run_inline``, the same asyncio
task for ``ainvoke`` / ``astream`` / ``abatch`` (a non-inline handler would run in an
executor with a copied context, and nothing it set would be seen). The handler opens a
:func:`qwen_meter.attribute` block there, keyed by ``run_id``, and closes it in
``on_llm_end`` / ``on_llm_error``. The block is a :class:`~qwen_meter.meter.attribution.Scope`:
LangChain's async paths may end a run in a copy of the caller's context, where a context
variable cannot be reset; closing the scope ends it in every context, so a finished run never
tags the calls made after it in the same task (even plain ``AsyncOpenAI`` calls). Every call
metered inside gets LangChain's tags, its metadata (values as strings) and
``langchain_run_id`` / ``langchain_parent_run_id`` / ``langchain_run_name``. One
``generate()`` with several prompts opens all its runs before any call is sent, so its calls
carry the last run's id (``invoke`` and ``batch`` are exact).

ChatTongyi (langchain-community) calls the dashscope SDK, not httpx: :func:`chat_tongyi`
builds one whose ``client`` is ``meter.wrap(dashscope.Generation)``, so qwen_meter records the
usage DashScope billed (the native ``usage`` of the answer or of the last stream chunk) and
its budgets and limiter apply — exact, where reading LangChain's ``token_usage`` afterwards
would miss retries and the pre-call checks. ChatTongyi's async methods run the SDK in an
executor thread without the caller's context; the class :func:`chat_tongyi` returns runs them
with the context copied, so attribution reaches those calls too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..base.errors import MissingExtra
from ..meter.attribution import Scope

try:
    from langchain_core.callbacks import BaseCallbackHandler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the LangChain integration needs langchain-core: "
                       'pip install ".[langchain]" (from a clone)') from exc

if TYPE_CHECKING:
    from ..meter.pipeline import Meter


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


class QwenMeterCallbackHandler(BaseCallbackHandler):
    """Carries LangChain's tags, metadata and run ids into the usage records (module docs).

    ``metadata_keys`` limits which LangChain metadata keys are copied (default: all);
    ``prefix`` is put before the run-id keys.
    """

    run_inline = True  # async: run in the caller's task, so the attribution reaches the call
    raise_error = False

    def __init__(self, *, metadata_keys: Sequence[str] | None = None,
                 prefix: str = "langchain_") -> None:
        super().__init__()
        self.metadata_keys = None if metadata_keys is None else frozenset(metadata_keys)
        self.prefix = prefix
        self._open: dict[UUID, Scope] = {}

    def _metadata(self, run_id: UUID, parent_run_id: UUID | None,
                  metadata: Mapping[str, Any] | None, name: str | None) -> dict[str, str]:
        out = {str(k): _text(v) for k, v in (metadata or {}).items()
               if v is not None and (self.metadata_keys is None or k in self.metadata_keys)}
        out[f"{self.prefix}run_id"] = str(run_id)
        if parent_run_id is not None:
            out[f"{self.prefix}parent_run_id"] = str(parent_run_id)
        if name:
            out[f"{self.prefix}run_name"] = name
        return out

    def _push(self, run_id: UUID, parent_run_id: UUID | None, tags: list[str] | None,
              metadata: Mapping[str, Any] | None, name: str | None) -> None:
        self._open[run_id] = Scope(tags=[str(t) for t in tags or ()],
                                   metadata=self._metadata(run_id, parent_run_id, metadata,
                                                           name))

    def _pop(self, run_id: UUID) -> None:
        scope = self._open.pop(run_id, None)
        if scope is not None:
            scope.close()

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._push(run_id, parent_run_id, tags, metadata, kwargs.get("name"))

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._push(run_id, parent_run_id, tags, metadata, kwargs.get("name"))

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._pop(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._pop(run_id)


@cache
def _tongyi_class() -> type:
    """ChatTongyi with its async paths keeping the caller's context (made on first use, so
    the handler alone never imports langchain-community)."""
    import asyncio
    import contextvars
    import functools
    from collections.abc import AsyncIterator

    try:
        from langchain_community.chat_models.tongyi import ChatTongyi
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtra("ChatTongyi needs langchain-community and dashscope: "
                           'pip install ".[langchain]" (from a clone)') from exc

    class MeteredChatTongyi(ChatTongyi):
        """ChatTongyi whose dashscope calls run in the caller's context, sync and async."""

        async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                             **kwargs: Any) -> Any:
            if self.streaming:
                return await super()._agenerate(messages, stop=stop, run_manager=run_manager,
                                                **kwargs)
            # ChatTongyi runs the blocking SDK call in an executor without the context;
            # run its own sync path there with the context copied instead.
            context = contextvars.copy_context()
            call = functools.partial(context.run, self._generate, messages, stop, None,
                                     **kwargs)
            return await asyncio.get_running_loop().run_in_executor(None, call)

        async def astream_completion_with_retry(self, **kwargs: Any) -> AsyncIterator[Any]:
            context = contextvars.copy_context()
            stream = context.run(self.stream_completion_with_retry, **kwargs)
            loop = asyncio.get_running_loop()
            done = object()

            def step() -> Any:
                # Each step of the SDK's blocking stream runs in the caller's context, so the
                # metered stream settles with the right attribution.
                return context.run(next, stream, done)

            while True:
                item = await loop.run_in_executor(None, step)
                if item is done:
                    return
                yield item

    return MeteredChatTongyi


def chat_tongyi(meter: Meter, **kwargs: Any) -> Any:
    """A ``ChatTongyi`` (langchain-community) whose dashscope calls ``meter`` meters.

    Keyword arguments are ChatTongyi's (``model``, ``api_key``, ``streaming``, ...). Text
    models go through the metered ``Generation``, ``-vl`` models through the metered
    ``MultiModalConversation``.
    """
    chat = _tongyi_class()(**kwargs)
    chat.client = meter.wrap(chat.client)
    return chat
