"""Usage: the token counts a call was billed for, as the API reports them.

:meth:`Usage.parse` reads the ``usage`` of an OpenAI-compatible response (``prompt_tokens``,
``prompt_tokens_details.cached_tokens`` ...) or of a native DashScope response
(``input_tokens``, ``output_tokens``, ``input_tokens_details`` ...), as a dict or an SDK object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..base.errors import UsageParseError
from ..tokens.messages import as_mapping

CACHE_TYPES = ("implicit", "explicit")
#: The token-count fields, each a whole number >= 0.
_COUNTS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens",
           "reasoning_tokens", "image_tokens", "audio_tokens", "video_tokens",
           "output_audio_tokens", "search_count")


@dataclass(frozen=True)
class Usage:
    """Billed tokens of one call.

    ``prompt_tokens`` includes ``cached_tokens``, ``cache_creation_tokens`` and the media
    tokens; ``completion_tokens`` includes ``reasoning_tokens`` and ``output_audio_tokens``.
    """

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_type: str = "implicit"
    reasoning_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0
    video_tokens: int = 0
    output_audio_tokens: int = 0
    #: web searches billed per call (DashScope's ``usage.plugins.search.count``)
    search_count: int = 0

    def __post_init__(self) -> None:
        # Three are made per metered call: read the instance dict once, and take the plain
        # ``int`` (never a bool: its type is not int) fast; anything else gets the full check.
        values = self.__dict__
        for name in _COUNTS:
            value = values[name]
            if (type(value) is not int or value < 0) and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise UsageParseError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.cache_type not in CACHE_TYPES:
            raise UsageParseError(f"cache_type must be implicit or explicit, "
                                  f"got {self.cache_type!r}")
        inside = (values["cached_tokens"] + values["cache_creation_tokens"]
                  + values["image_tokens"] + values["audio_tokens"] + values["video_tokens"])
        if inside > self.prompt_tokens:
            raise UsageParseError(f"cached, cache-creation and media tokens ({inside}) exceed "
                                  f"prompt_tokens ({self.prompt_tokens})")
        if self.reasoning_tokens + self.output_audio_tokens > self.completion_tokens:
            raise UsageParseError("reasoning and audio output tokens exceed completion_tokens")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def parse(cls, usage: Any) -> Usage:
        """A :class:`Usage` from an OpenAI-compatible or native DashScope ``usage`` object."""
        if isinstance(usage, Usage):
            return usage
        if type(usage) is dict and usage.keys() <= _PLAIN_OPENAI:
            # The usual compatible-mode answer (no details, no tools): three counts, read
            # and checked here; anything unusual takes the full path and its errors.
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if type(prompt) is int and prompt >= 0 and (
                    completion is None or (type(completion) is int and completion >= 0)):
                return cls(prompt, completion or 0)
        raw = as_mapping(usage)
        if raw is None:
            raise UsageParseError(f"usage must be an object, not {type(usage).__name__}")
        if "prompt_tokens" in raw:
            return _from_openai(raw)
        if "input_tokens" in raw:
            return _from_dashscope(raw)
        raise UsageParseError("usage has neither prompt_tokens nor input_tokens "
                              f"(keys: {', '.join(map(str, raw)) or 'none'})")


#: The keys of an OpenAI-compatible usage with nothing but its counts.
_PLAIN_OPENAI = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


def _count(raw: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    value = raw.get(key)
    if value is None:
        if required:
            raise UsageParseError(f"usage is missing {key}")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageParseError(f"usage.{key} must be a whole number >= 0, got {value!r}")
    return value


def _details(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    details = as_mapping(value)
    if details is None:
        raise UsageParseError(f"usage.{key} must be an object")
    return details


def _cache_type(details: Mapping[str, Any]) -> str:
    kind = details.get("cache_type")
    return "explicit" if kind in ("ephemeral", "explicit") else "implicit"


def _searches(raw: Mapping[str, Any]) -> int:
    """Web searches in ``usage.plugins`` (native) or ``usage.x_tools`` (compatible mode).

    Each is a mapping of tool name to ``{"count": n, ...}`` (or to a bare count); the tools
    whose name mentions search are counted (``search``, ``web_search``).
    """
    total = 0
    for key in ("plugins", "x_tools"):
        tools = _details(raw, key)
        for name, entry in tools.items():
            if "search" not in str(name).lower():
                continue
            if isinstance(entry, int) and not isinstance(entry, bool):
                count: Any = entry
            else:
                body = as_mapping(entry)
                if body is None:
                    raise UsageParseError(f"usage.{key}.{name} must be an object")
                count = body.get("count", 0)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise UsageParseError(f"usage.{key}.{name}.count must be a whole number >= 0, "
                                      f"got {count!r}")
            total += count
    return total


def _from_openai(raw: Mapping[str, Any]) -> Usage:
    prompt = _details(raw, "prompt_tokens_details")
    completion = _details(raw, "completion_tokens_details")
    return Usage(
        prompt_tokens=_count(raw, "prompt_tokens", required=True),
        completion_tokens=_count(raw, "completion_tokens"),
        cached_tokens=_count(prompt, "cached_tokens"),
        cache_creation_tokens=_count(prompt, "cache_creation_input_tokens"),
        cache_type=_cache_type(prompt),
        reasoning_tokens=_count(completion, "reasoning_tokens"),
        image_tokens=_count(prompt, "image_tokens"),
        audio_tokens=_count(prompt, "audio_tokens"),
        video_tokens=_count(prompt, "video_tokens"),
        output_audio_tokens=_count(completion, "audio_tokens"),
        search_count=_searches(raw),
    )


def _from_dashscope(raw: Mapping[str, Any]) -> Usage:
    details = _details(raw, "input_tokens_details") or _details(raw, "prompt_tokens_details")
    output = _details(raw, "output_tokens_details")
    return Usage(
        prompt_tokens=_count(raw, "input_tokens", required=True),
        completion_tokens=_count(raw, "output_tokens"),
        cached_tokens=_count(details, "cached_tokens"),
        cache_creation_tokens=_count(details, "cache_creation_input_tokens"),
        cache_type=_cache_type(details),
        reasoning_tokens=_count(output, "reasoning_tokens"),
        image_tokens=_count(details, "image_tokens"),
        audio_tokens=_count(details, "audio_tokens"),
        video_tokens=_count(details, "video_tokens"),
        output_audio_tokens=_count(output, "audio_tokens"),
        search_count=_searches(raw),
    )
