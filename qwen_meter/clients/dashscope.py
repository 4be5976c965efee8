"""``dashscope.Generation`` / ``AioGeneration``: the native SDK's ``call``, metered.

The SDK returns error answers as responses (``status_code``, ``code``, ``message``) rather than
raising; the wrapper retries those DashScope says can succeed and otherwise returns them as the
SDK would. Streams (``incremental_output`` true or false) carry cumulative usage in every chunk;
the last one settles the call, and a stream the caller stops early is settled from the text it
received.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from ..meter import Meter, MeteredCall
from ..server_errors import DashScopeError, classify


def _request(model: str, prompt: Any, messages: Any, options: Mapping[str, Any]
             ) -> dict[str, Any]:
    if messages is None and prompt is not None:
        messages = [{"role": "user", "content": prompt}]
    return {"model": model, "messages": messages, "tools": options.get("tools"),
            "max_tokens": options.get("max_tokens"),
            "enable_thinking": options.get("enable_thinking"),
            "stream": bool(options.get("stream"))}


def _error(response: Any) -> DashScopeError | None:
    status = getattr(response, "status_code", 200)
    if status == 200:
        return None
    return classify(status, {"code": getattr(response, "code", None),
                             "message": getattr(response, "message", None)})


def _reply(response: Any) -> dict[str, Any]:
    output = getattr(response, "output", None) or {}
    choices = output.get("choices") if isinstance(output, Mapping) else None
    if choices:
        message = choices[0].get("message") or {}
        return {"content": message.get("content"),
                "reasoning_content": message.get("reasoning_content"),
                "tool_calls": message.get("tool_calls")}
    return {"content": output.get("text") if isinstance(output, Mapping) else None}


def _usage(response: Any) -> Any:
    usage = getattr(response, "usage", None)
    return dict(usage) if usage and "input_tokens" in usage else None


class _StreamState:
    """Follows a native stream: the latest cumulative usage and the reply so far."""

    def __init__(self, call: MeteredCall, incremental: bool) -> None:
        self.call = call
        self.incremental = incremental
        self.usage: Any = None
        self.request_id: str | None = None
        self.content = ""
        self.reasoning = ""

    def see(self, item: Any) -> bool:
        """Take one chunk; False (and the call settled) if it is an error answer."""
        if _error(item) is not None:
            self.settle("dropped")
            return False
        self.usage = _usage(item) or self.usage
        self.request_id = getattr(item, "request_id", None) or self.request_id
        reply = _reply(item)
        text, thought = reply.get("content") or "", reply.get("reasoning_content") or ""
        if self.incremental:
            self.content += text
            self.reasoning += thought
        else:
            self.content = text or self.content
            self.reasoning = thought or self.reasoning
        return True

    def end(self) -> None:
        self.settle("ok" if self.usage is not None else "incomplete")

    def settle(self, status: str) -> None:
        if not self.call.settled:
            self.call.finish(self.usage, request_id=self.request_id,
                             reply={"content": self.content,
                                    "reasoning_content": self.reasoning or None},
                             status=status if self.usage is None else "ok")


class MeteredGeneration:
    """``dashscope.Generation`` with a metered ``call``; everything else passes through."""

    def __init__(self, meter: Meter, generation: Any) -> None:
        self._meter = meter
        self._generation = generation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generation, name)

    def call(self, model: str, prompt: Any = None, messages: Any = None,
             **options: Any) -> Any:
        call = self._meter.begin(_request(model, prompt, messages, options))
        while True:
            try:
                response = self._generation.call(model=model, prompt=prompt, messages=messages,
                                                  **options)
                first = response
                if options.get("stream"):
                    first = next(response, None)
            except Exception as exc:
                call.fail(exc)
                raise
            error = _error(first) if first is not None else None
            if error is not None:
                delay = call.next_attempt(error, http_status=error.status,
                                          request_id=getattr(first, "request_id", None))
                if delay is None:
                    return iter([first]) if options.get("stream") else first
                self._meter.retry.sleep(delay)
                call.retry()
                continue
            if options.get("stream"):
                rest = itertools.chain([] if first is None else [first], response)
                return self._stream(call, rest, bool(options.get("incremental_output")))
            call.finish(_usage(response), request_id=getattr(response, "request_id", None),
                        reply=_reply(response))
            return response

    @staticmethod
    def _stream(call: MeteredCall, items: Iterator[Any], incremental: bool) -> Iterator[Any]:
        state = _StreamState(call, incremental)
        try:
            for item in items:
                ok = state.see(item)
                yield item
                if not ok:
                    return
        except GeneratorExit:
            state.settle("closed")
            raise
        except Exception:
            state.settle("dropped")
            raise
        state.end()


class MeteredAioGeneration(MeteredGeneration):
    """``dashscope.AioGeneration`` with a metered ``call`` (awaitable, async streams)."""

    async def call(self, model: str, prompt: Any = None, messages: Any = None,
                   **options: Any) -> Any:
        call = self._meter.begin(_request(model, prompt, messages, options))
        while True:
            try:
                response = await self._generation.call(model=model, prompt=prompt,
                                                        messages=messages, **options)
                first = response
                if options.get("stream"):
                    first = await anext(response, None)
            except Exception as exc:
                call.fail(exc)
                raise
            error = _error(first) if first is not None else None
            if error is not None:
                delay = call.next_attempt(error, http_status=error.status,
                                          request_id=getattr(first, "request_id", None))
                if delay is None:
                    return _one(first) if options.get("stream") else first
                await asyncio.sleep(delay)
                call.retry()
                continue
            if options.get("stream"):
                return self._astream(call, first, response,
                                     bool(options.get("incremental_output")))
            call.finish(_usage(response), request_id=getattr(response, "request_id", None),
                        reply=_reply(response))
            return response

    @staticmethod
    async def _astream(call: MeteredCall, first: Any, rest: AsyncIterator[Any],
                       incremental: bool) -> AsyncIterator[Any]:
        state = _StreamState(call, incremental)

        async def items() -> AsyncIterator[Any]:
            if first is not None:
                yield first
            async for item in rest:
                yield item

        try:
            async for item in items():
                ok = state.see(item)
                yield item
                if not ok:
                    return
        except GeneratorExit:
            state.settle("closed")
            raise
        except Exception:
            state.settle("dropped")
            raise
        state.end()


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item
