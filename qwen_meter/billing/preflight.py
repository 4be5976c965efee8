"""Pre-flight: will this request fit the model? And the longest conversation suffix that does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import checks as validate
from ..base.errors import (
    ContextLimitExceeded,
    InvalidMessages,
    InvalidRequest,
    LimitExceeded,
    OutputLimitExceeded,
)
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec
from ..tokens.messages import as_mapping, parse_messages
from .chat_counting import count_messages
from .checks import pricing_args
from .model_setup import TokenCount
from .pricing import thinking_applies
from .request import Request


@dataclass(frozen=True)
class Preflight:
    """A request that fits: its prompt count and the limits it was checked against."""

    model: str
    region: str
    prompt: TokenCount
    max_tokens: int | None
    thinking: bool
    max_input: int | None
    context_window: int | None
    max_output: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "region": self.region, "prompt_tokens": self.prompt.tokens,
                "exact": self.prompt.exact, "max_tokens": self.max_tokens,
                "thinking": self.thinking, "max_input": self.max_input,
                "context_window": self.context_window, "max_output": self.max_output}


def _spec(model: str | ModelSpec, catalogue: Catalogue | None) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else \
        (catalogue or default_catalogue()).resolve(model)


def check(request: Any, model: str | ModelSpec, *, max_tokens: int | None = None,
          tools: Any = None, enable_thinking: bool | None = None, region: str | None = None,
          at: dt.date | dt.datetime | str | None = None, catalogue: Catalogue | None = None
          ) -> Preflight:
    """Check a request (messages, or a request object) against the model's limits.

    Raises :class:`~qwen_meter.errors.ContextLimitExceeded` when the prompt is above the input
    limit or prompt + ``max_tokens`` is above the context window, and
    :class:`~qwen_meter.errors.OutputLimitExceeded` when ``max_tokens`` is above the output
    limit; both carry the numbers. Limits follow the mode: thinking has its own.
    """
    at = pricing_args("check", model=model, region=region, at=at, catalogue=catalogue)
    validate.optional_flag(enable_thinking, "check(enable_thinking=)")
    req = Request.of(request, tools=tools, max_tokens=max_tokens,
                     enable_thinking=enable_thinking)
    spec = _spec(model, catalogue)
    # A whole request body is counted as one, so its options (search, partial, files,
    # preserve_thinking ...) reach the count.
    prompt = count_messages(request if isinstance(request, Mapping) else req.subject,
                            spec.name, tools=req.tools, enable_thinking=req.enable_thinking,
                            high_resolution=req.high_resolution)
    return check_prompt(prompt, spec, max_tokens=req.max_tokens,
                        enable_thinking=req.enable_thinking, region=region, at=at,
                        thinking_budget=req.thinking_budget)


def check_prompt(prompt: TokenCount, spec: ModelSpec, *, max_tokens: int | None = None,
                 enable_thinking: bool | None = None, region: str | None = None,
                 at: dt.date | None = None, thinking_budget: int | None = None) -> Preflight:
    """:func:`check` for a prompt already counted."""
    offer = spec.offer(region, at)
    thinking = thinking_applies(spec, enable_thinking)
    limits = offer.limits
    if thinking and thinking_budget is not None and limits.max_reasoning is not None \
            and thinking_budget > limits.max_reasoning:
        raise InvalidRequest(f"{spec.name} reasons at most {limits.max_reasoning} tokens; "
                             f"thinking_budget is {thinking_budget}", field="thinking_budget")
    max_input = limits.input_limit(thinking)
    context = limits.context_limit(thinking)
    max_output = limits.output_limit(thinking)

    def exceeded(kind: type[LimitExceeded], message: str) -> LimitExceeded:
        return kind(message, prompt_tokens=prompt.tokens, max_input=max_input,
                    context_window=context, requested_output=max_tokens, max_output=max_output,
                    model=spec.name, region=offer.region, thinking=thinking)

    mode = " in thinking mode" if thinking else ""
    if max_input is not None and prompt.tokens > max_input:
        raise exceeded(ContextLimitExceeded,
                       f"{spec.name}{mode} takes at most {max_input} input tokens; this prompt "
                       f"has {prompt.tokens}")
    if max_tokens is not None and max_output is not None and max_tokens > max_output:
        raise exceeded(OutputLimitExceeded,
                       f"{spec.name}{mode} writes at most {max_output} tokens; max_tokens is "
                       f"{max_tokens}")
    if max_tokens is not None and context is not None and prompt.tokens + max_tokens > context:
        raise exceeded(ContextLimitExceeded,
                       f"prompt ({prompt.tokens}) + max_tokens ({max_tokens}) exceed "
                       f"{spec.name}'s context window of {context}")
    return Preflight(spec.name, offer.region, prompt, max_tokens, thinking, max_input, context,
                     max_output)


def _units(messages: Sequence[Any]) -> list[list[int]]:
    """Message indices grouped so that an assistant tool call stays with its tool results."""
    parsed = parse_messages(messages)
    units: list[list[int]] = []
    for i, message in enumerate(parsed):
        if message.role == "tool" and units and (parsed[units[-1][0]].tool_calls
                                                 or parsed[units[-1][-1]].role == "tool"):
            units[-1].append(i)
        else:
            units.append([i])
    return units


def fit_messages(messages: Sequence[Any], model: str | ModelSpec, *,
                 max_tokens: int | None = None, tools: Any = None,
                 enable_thinking: bool | None = None, region: str | None = None,
                 catalogue: Catalogue | None = None) -> list[Any]:
    """The longest suffix of the conversation that fits, keeping a leading system message.

    An assistant message with tool calls is never separated from the tool results that
    follow it. Returns the kept messages (the same objects); raises
    :class:`~qwen_meter.errors.ContextLimitExceeded` if not even the last turn fits.
    """
    pricing_args("fit_messages", model=model, region=region, catalogue=catalogue)
    validate.optional_flag(enable_thinking, "fit_messages(enable_thinking=)")
    validate.sequence(messages, "fit_messages(messages=)")
    items = list(messages)
    if not items:
        raise InvalidMessages("no messages")
    spec = _spec(model, catalogue)
    first = as_mapping(items[0])
    head = items[:1] if first is not None and first.get("role") == "system" else []
    body = items[len(head):]
    units = _units(body) if body else []

    def fits(candidate: list[Any]) -> bool:
        try:
            check({"messages": candidate, "tools": tools, "max_tokens": max_tokens,
                   "enable_thinking": enable_thinking}, spec, region=region)
        except ContextLimitExceeded:
            return False
        return True

    # Binary search over how many trailing units to keep: more kept units never fit better.
    low, high = 0, len(units)
    while low < high:
        mid = (low + high + 1) // 2
        kept = [body[i] for unit in units[len(units) - mid:] for i in unit]
        if fits(head + kept):
            low = mid
        else:
            high = mid - 1
    if low == 0:
        check({"messages": head + [body[i] for i in units[-1]] if units else head,
               "tools": tools, "max_tokens": max_tokens, "enable_thinking": enable_thinking},
              spec, region=region)
    return head + [body[i] for unit in units[len(units) - low:] for i in unit]
