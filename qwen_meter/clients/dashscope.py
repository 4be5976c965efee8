"""The native dashscope SDK's ``call``, metered: ``Generation`` / ``AioGeneration``,
``MultiModalConversation`` / ``AioMultiModalConversation`` and ``TextEmbedding``.

The SDK returns error answers as responses (``status_code``, ``code``, ``message``) rather than
raising; the wrapper retries those DashScope says can succeed and otherwise returns them as the
SDK would. Streams (``incremental_output`` true or false) carry cumulative usage in every chunk;
the last one settles the call. A stream that ends without a final ``finish_reason`` is
``incomplete``; one the caller stops early is ``closed``, with the usage reached so far.

What is counted is what the SDK sends: with ``history`` the history turns plus ``prompt``
(``messages`` is then ignored, as the SDK ignores it); with ``messages`` the messages plus
``prompt`` appended as a user turn; else ``prompt`` alone. The region comes from
``base_address=`` or ``dashscope.base_http_api_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from ..meter.call import MeteredCall
from ..meter.pipeline import Meter
from ..meter.server_errors import DashScopeError, classify


def _history(history: Any) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for turn in history or []:
        if isinstance(turn, Mapping):
            if turn.get("user") is not None:
                turns.append({"role": "user", "content": str(turn["user"])})
            if turn.get("bot") is not None:
                turns.append({"role": "assistant", "content": str(turn["bot"])})
    return turns


def chat_request(model: Any, prompt: Any, messages: Any, history: Any,
                 options: Mapping[str, Any]) -> dict[str, Any]:
    """The chat request the SDK sends for these ``call`` arguments (see the module docs)."""
    ask = [{"role": "user", "content": prompt}] if prompt else []
    if history is not None:
        sent = _history(history) + ask
    elif messages is not None:
        sent = list(messages) + ask
    else:
        sent = [{"role": "user", "content": prompt}]
    return {"model": model, "messages": sent, "tools": options.get("tools"),
            "max_tokens": options.get("max_tokens"),
            "enable_thinking": options.get("enable_thinking"),
            "vl_high_resolution_images": options.get("vl_high_resolution_images"),
            "user": options.get("user"), "stream": bool(options.get("stream")),
            # sampling parameters: reported by observers (gen_ai.request.*), never counted
            **{k: options[k] for k in ("temperature", "top_p", "top_k", "seed",
                                       "presence_penalty", "frequency_penalty")
               if k in options}}


def _error(response: Any) -> DashScopeError | None:
    status = getattr(response, "status_code", 200)
    if status == 200:
        return None
    return classify(status, {"code": getattr(response, "code", None),
                             "message": getattr(response, "message", None)})


def _output(response: Any) -> Mapping[str, Any]:
    output = getattr(response, "output", None) or {}
    return output if isinstance(output, Mapping) else {}


def output_reply(output: Any) -> dict[str, Any]:
    """The reply in a native ``output`` (``text``, or ``choices[0].message``; multimodal
    content parts joined): ``content``, ``reasoning_content``, ``tool_calls``."""
    if not isinstance(output, Mapping):
        return {"content": None}
    choices = output.get("choices")
    if choices and isinstance(choices[0], Mapping):
        message = choices[0].get("message") or {}
        content = message.get("content")
        if isinstance(content, list):  # multimodal replies: [{"text": ...}]
            content = "".join(str(p.get("text") or "") for p in content
                              if isinstance(p, Mapping))
        return {"content": content, "reasoning_content": message.get("reasoning_content"),
                "tool_calls": message.get("tool_calls")}
    return {"content": output.get("text")}


def add_reply(content: str, reasoning: str, reply: Mapping[str, Any], incremental: bool
              ) -> tuple[str, str]:
    """(content, reasoning) of a native stream after one more event's ``reply``: with
    ``incremental_output`` each event is a delta, otherwise the whole text so far."""
    text, thought = reply.get("content") or "", reply.get("reasoning_content") or ""
    if incremental:
        return content + text, reasoning + thought
    return text or content, thought or reasoning


def output_finish(output: Any) -> str | None:
    """A native ``output``'s finish reason (None while a stream goes on: DashScope sends
    the string ``"null"`` until the last event)."""
    if not isinstance(output, Mapping):
        return None
    choices = output.get("choices")
    reason = choices[0].get("finish_reason") if choices and isinstance(choices[0], Mapping) \
        else output.get("finish_reason")
    return None if not reason or reason == "null" else str(reason)


def _reply(response: Any) -> dict[str, Any]:
    return output_reply(_output(response))


def _reasons(response: Any) -> tuple[str, ...]:
    reason = output_finish(_output(response))
    return () if reason is None else (reason,)


def _usage(response: Any) -> Any:
    usage = getattr(response, "usage", None)
    if not usage:
        return None
    usage = dict(usage)
    if "input_tokens" in usage:
        return usage
    if "total_tokens" in usage:  # embeddings: input only
        return {"input_tokens": usage["total_tokens"], "output_tokens": 0}
    return None


class _StreamState:
    """Follows a native stream: the latest cumulative usage and the reply so far."""

    def __init__(self, incremental: bool) -> None:
        self.incremental = incremental
        self.usage: Any = None
        self.request_id: str | None = None
        self.content = ""
        self.reasoning = ""
        self.finished = False
        self.failed = False
        self.reasons: tuple[str, ...] = ()

    def see(self, item: Any) -> bool:
        """Take one chunk; False if it is an error answer (the stream then ends)."""
        if _error(item) is not None:
            self.failed = True
            return False
        self.usage = _usage(item) or self.usage
        self.request_id = getattr(item, "request_id", None) or self.request_id
        reason = output_finish(_output(item))
        self.finished = self.finished or reason is not None
        self.reasons = (reason,) if reason is not None else self.reasons
        self.content, self.reasoning = add_reply(self.content, self.reasoning, _reply(item),
                                                 self.incremental)
        return True

    def outcome(self, status: str) -> dict[str, Any]:
        if status == "ok" and not self.finished:
            status = "incomplete"  # no final finish_reason: the answer may be cut
        if self.failed:
            status = "dropped"
        return {"usage": self.usage, "request_id": self.request_id, "status": status,
                "finish_reasons": self.reasons,
                "reply": {"content": self.content, "reasoning_content": self.reasoning or None}}


class MeteredGeneration:
    """A dashscope API class with a metered ``call``; everything else passes through."""

    endpoint = "chat"
    #: the names of ``call``'s positional parameters, to read positional arguments by name
    positional: tuple[str, ...] = ("model", "prompt", "history", "api_key", "messages")

    def __init__(self, meter: Meter, api: Any) -> None:
        self._meter = meter
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def _metered(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The request the meter counts, from the ``call`` arguments."""
        options = {**dict(zip(self.positional, args, strict=False)), **kwargs}
        model = options.pop("model", None)
        if self.endpoint == "embeddings":
            return {"model": model, "input": options.get("input")}
        return chat_request(model, options.pop("prompt", None), options.pop("messages", None),
                            options.pop("history", None), options)

    def _url(self, kwargs: Mapping[str, Any]) -> Any:
        if kwargs.get("base_address"):
            return kwargs["base_address"]
        import dashscope

        return getattr(dashscope, "base_http_api_url", None)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        meter = self._meter
        call = meter.begin(self._metered(args, kwargs), endpoint=self.endpoint,
                           url=self._url(kwargs))
        stream = bool(kwargs.get("stream"))
        phase = "send"
        try:
            while True:
                phase = "send"
                response = self._api.call(*args, **kwargs)
                first = next(response, None) if stream else response
                error = _error(first) if first is not None else None
                if error is not None:
                    phase = "refused"  # an error answer: nothing was billed
                    delay = call.next_attempt(error, http_status=error.status,
                                              request_id=getattr(first, "request_id", None))
                    if delay is None:
                        return iter([first]) if stream else first
                    meter.retry.sleep(delay)
                    call.retry()
                    continue
                if stream:
                    return _tracked(call, self._stream, first, response,
                                    bool(kwargs.get("incremental_output")))
                call.finish(_usage(response), request_id=getattr(response, "request_id", None),
                            reply=_reply(response), finish_reasons=_reasons(response))
                return response
        except BaseException as exc:  # Ctrl-C while waiting: a sent call is charged
            if not call.settled:
                call.interrupted(exc, phase)
            raise

    @staticmethod
    def _stream(call: MeteredCall, first: Any, rest: Iterator[Any],
                state: _StreamState) -> Iterator[Any]:
        try:
            for item in ([] if first is None else [first]):
                state.see(item)
                yield item
            for item in rest:
                ok = state.see(item)
                yield item
                if not ok:
                    break
        except GeneratorExit:
            call.finish(**state.outcome("closed"))
            raise
        except BaseException as exc:  # Ctrl-C mid-stream: charged with the usage so far
            if isinstance(exc, Exception):
                call.finish(**state.outcome("dropped"))
            else:
                call.interrupted(exc, "stream", **state.outcome("cancelled"))
            raise
        call.finish(**state.outcome("ok"))


class MeteredAioGeneration(MeteredGeneration):
    """An async dashscope API class (``AioGeneration`` ...) with a metered ``call``."""

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        meter = self._meter
        call = await meter.begin_async(self._metered(args, kwargs), endpoint=self.endpoint,
                                       url=self._url(kwargs))
        stream = bool(kwargs.get("stream"))
        phase = "send"
        try:
            while True:
                phase = "send"
                response = await self._api.call(*args, **kwargs)
                first = await anext(response, None) if stream else response
                error = _error(first) if first is not None else None
                if error is not None:
                    phase = "refused"  # an error answer: nothing was billed
                    delay = await call.next_attempt_async(
                        error, http_status=error.status,
                        request_id=getattr(first, "request_id", None))
                    if delay is None:
                        return _one(first) if stream else first
                    await asyncio.sleep(delay)
                    await call.retry_async()
                    continue
                if stream:
                    return _tracked(call, self._astream, first, response,
                                    bool(kwargs.get("incremental_output")))
                await call.finish_async(_usage(response),
                                        request_id=getattr(response, "request_id", None),
                                        reply=_reply(response),
                                        finish_reasons=_reasons(response))
                return response
        except BaseException as exc:  # CancelledError is not an Exception
            if not call.settled:
                await call.interrupted_async(exc, phase)
            raise

    @staticmethod
    async def _astream(call: MeteredCall, first: Any, rest: AsyncIterator[Any],
                       state: _StreamState) -> AsyncIterator[Any]:
        try:
            if first is not None:
                state.see(first)
                yield first
            async for item in rest:
                ok = state.see(item)
                yield item
                if not ok:
                    break
        except GeneratorExit:  # aclose() (or the loop's finaliser) may still await
            await call.finish_async(**state.outcome("closed"))
            raise
        except BaseException as exc:  # cancelled mid-stream: charged with the usage so far
            if isinstance(exc, Exception):
                await call.finish_async(**state.outcome("dropped"))
            else:
                await call.interrupted_async(exc, "stream", **state.outcome("cancelled"))
            raise
        await call.finish_async(**state.outcome("ok"))


class MeteredMultiModalConversation(MeteredGeneration):
    """``dashscope.MultiModalConversation`` with a metered ``call``."""

    positional = ("model", "messages", "api_key")


class MeteredAioMultiModalConversation(MeteredAioGeneration):
    """``dashscope.AioMultiModalConversation`` with a metered ``call``."""

    positional = ("model", "messages", "api_key")


class MeteredTextEmbedding(MeteredGeneration):
    """``dashscope.TextEmbedding`` with a metered ``call`` (input tokens only)."""

    endpoint = "embeddings"
    positional = ("model", "input")


def _tracked(call: MeteredCall, make: Any, first: Any, rest: Any, incremental: bool) -> Any:
    """The metered stream, known to the meter until it settles (see ``OpenStreams``)."""
    state = _StreamState(incremental)
    stream = make(call, first, rest, state)
    call.meter.streams.add(stream, call, lambda: state.outcome("closed"))
    return stream


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item
