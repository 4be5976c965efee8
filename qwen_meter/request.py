"""A chat request as the pre-flight and pricing functions take it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidMessages


@dataclass(frozen=True)
class Request:
    """What is sent (``subject``: messages, a text or a prompt token count) and the options
    that change its count or cost."""

    subject: Any
    tools: Any = None
    max_tokens: int | None = None
    enable_thinking: bool | None = None
    high_resolution: bool = False

    @classmethod
    def of(cls, request: Any, *, tools: Any = None, max_tokens: int | None = None,
           enable_thinking: bool | None = None) -> Request:
        """From a request object (``messages``, ``tools``, ``max_tokens`` or
        ``max_completion_tokens``, ``enable_thinking``, ``vl_high_resolution_images``) or a bare
        subject; keyword arguments win over the object's keys."""
        options: Mapping[str, Any] = {}
        subject = request
        if isinstance(request, Mapping):
            if "messages" not in request:
                raise InvalidMessages("a request object needs 'messages'")
            options, subject = request, request["messages"]
        if max_tokens is None:
            max_tokens = options.get("max_tokens", options.get("max_completion_tokens"))
        if max_tokens is not None and (isinstance(max_tokens, bool)
                                       or not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidMessages(f"max_tokens must be a positive whole number, "
                                  f"got {max_tokens!r}")
        return cls(subject=subject,
                   tools=tools if tools is not None else options.get("tools"),
                   max_tokens=max_tokens,
                   enable_thinking=enable_thinking if enable_thinking is not None
                   else options.get("enable_thinking"),
                   high_resolution=bool(options.get("vl_high_resolution_images")))
