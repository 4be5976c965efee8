"""The meter's shortcuts compute the same thing as the long way, to the last Decimal digit.

An estimate prices its low and high ends in one pass (one tier lookup, the input side once),
and the meter reads ``max_tokens`` without building a whole :class:`Request` for the usual
chat body. Both must give exactly what the separate, general functions give: the same
:class:`Cost` objects (amounts, parts, tier, flags) and the same errors for bad options.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from qwen_meter.base.errors import QwenMeterError
from qwen_meter.billing.pricing import Cost, estimate_offer, price_offer, thinking_applies
from qwen_meter.billing.request import Request, max_tokens_of
from qwen_meter.billing.usage import Usage
from qwen_meter.catalogue.core import default_catalogue

PROMPTS = [Usage(prompt_tokens=22), Usage(prompt_tokens=0),
           Usage(prompt_tokens=200_000),  # past the first request-size tier where there is one
           Usage(prompt_tokens=5_000, cached_tokens=3_000),
           Usage(prompt_tokens=5_000, cached_tokens=1_000, cache_creation_tokens=2_000,
                 cache_type="explicit"),
           Usage(prompt_tokens=4_000, image_tokens=1_000, audio_tokens=500)]
OPTIONS = [{}, {"max_tokens": 100}, {"batch": True}, {"batch_chat": True},
           {"search": True, "max_tokens": 50}, {"audio_output": True, "max_tokens": 10},
           {"thinking_budget": 300, "n": 2}]


def _the_long_way(prompt: Usage, spec: object, offer: object, thinking: bool,
                  options: dict[str, object]) -> tuple[object, object]:
    """The low and high ends priced separately, each from scratch (the general path)."""
    batch, batch_chat = bool(options.get("batch")), bool(options.get("batch_chat"))
    low = price_offer(prompt, spec, offer, False, batch=batch,  # type: ignore[arg-type]
                      batch_chat=batch_chat)
    limits = offer.limits  # type: ignore[attr-defined]
    max_tokens = options.get("max_tokens")
    allowance = max_tokens if max_tokens is not None else limits.output_limit(thinking)
    if allowance is None:
        return low, None
    n = int(options.get("n", 1))  # type: ignore[call-overload]
    asked = options.get("thinking_budget")
    budget = limits.max_reasoning
    reasoning = (min(asked, budget) if asked and budget else asked or budget or 0) \
        if thinking else 0
    allowance = (allowance + reasoning) * n
    worst = Usage(prompt_tokens=prompt.prompt_tokens, completion_tokens=allowance,
                  cached_tokens=prompt.cached_tokens,
                  cache_creation_tokens=prompt.cache_creation_tokens,
                  cache_type=prompt.cache_type,
                  reasoning_tokens=(reasoning * n or allowance) if thinking else 0,
                  image_tokens=prompt.image_tokens, audio_tokens=prompt.audio_tokens,
                  video_tokens=prompt.video_tokens,
                  output_audio_tokens=allowance if options.get("audio_output") else 0)
    high = price_offer(worst, spec, offer, thinking, batch=batch,  # type: ignore[arg-type]
                       batch_chat=batch_chat, searches=int(bool(options.get("search"))))
    return low, high


COST_FIELDS = tuple(f.name for f in fields(Cost))


def _built_as_init_builds(cost: Cost) -> None:
    """A Cost the pricing builds field by field (no __init__) is the one __init__ builds."""
    assert tuple(cost.__dict__) == COST_FIELDS
    again = Cost(**{name: getattr(cost, name) for name in COST_FIELDS})
    assert again == cost and repr(again) == repr(cost)


def test_an_estimate_in_one_pass_equals_each_end_priced_alone() -> None:
    checked = 0
    for spec in default_catalogue():
        for offers in spec.offers.values():
            for offer in offers:
                for thinking in {False, thinking_applies(spec, None), spec.thinking != "none"}:
                    for prompt in PROMPTS:
                        for options in OPTIONS:
                            try:
                                found = estimate_offer(
                                    prompt, spec, offer, thinking,
                                    **{"max_tokens": None, **options})  # type: ignore[arg-type]
                            except QwenMeterError:
                                continue
                            low, high = _the_long_way(prompt, spec, offer, thinking, options)
                            assert found.low == low, (spec.name, offer.region, prompt, options)
                            _built_as_init_builds(found.low)
                            if high is not None:
                                assert found.high == high, (spec.name, offer.region, prompt,
                                                            options)
                                _built_as_init_builds(found.high)
                                # the same digits, not only the same value
                                assert str(found.high.amount) == str(high.amount)  # type: ignore[attr-defined]
                            checked += 1
    assert checked > 1000


BODIES = [
    {"model": "qwen-plus", "messages": []},
    {"model": "qwen-plus", "messages": [], "max_tokens": 64},
    {"model": "qwen-plus", "messages": [], "max_tokens": 0},
    {"model": "qwen-plus", "messages": [], "max_tokens": True},
    {"model": "qwen-plus", "messages": [], "max_tokens": "64"},
    {"model": "qwen-plus", "messages": [], "max_completion_tokens": 32},
    {"model": "qwen-plus", "messages": [], "max_tokens": 8, "max_completion_tokens": 32},
    {"model": "qwen-plus", "messages": [], "n": 9},
    {"model": "qwen-plus", "messages": [], "enable_thinking": "yes"},
    {"model": "qwen-plus", "messages": [], "tool_choice": 3},
    {"model": "qwen-plus", "messages": [], "modalities": "audio"},
    {"model": "qwen-plus", "messages": ({"role": "user", "content": "hi"},), "max_tokens": 5},
    {"model": "qwen-plus", "messages": None},
    {"model": "qwen-plus", "messages": "hi"},
    {"model": "qwen-plus", "messages": [], "parameters": {"max_tokens": 7}},
    {"model": "qwen-plus", "messages": [], "extra_body": {"max_tokens": 7}},
    {"model": "qwen-plus", "messages": [], "extra_body": 5},
    {"model": "qwen-plus", "messages": [], "temperature": 0.2, "stream": True, "user": "u",
     "max_tokens": 12},
]


@pytest.mark.parametrize("body", BODIES)
def test_max_tokens_read_alone_equals_a_whole_request(body: dict[str, object]) -> None:
    try:
        expected: object = Request.of(body).max_tokens
    except QwenMeterError as exc:
        expected = exc
    try:
        found: object = max_tokens_of(body)
    except QwenMeterError as exc:
        found = exc
    if isinstance(expected, Exception):
        assert type(found) is type(expected) and str(found) == str(expected)
    else:
        assert found == expected
