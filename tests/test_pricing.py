"""Costs: hand-computed examples for tiered, cached, thinking and batch calls; properties."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter import Usage, cost, estimate_cost


def test_published_call_on_qwen_plus():
    # 22 prompt + 16 completion tokens at ¥0.8 / ¥2 per 1M.
    c = cost({"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}, "qwen-plus")
    assert c.amount == D("0.0000496") and c.currency == "CNY" and c.tier == 0
    assert str(c) == "¥0.0000496 CNY"


def test_request_size_tier_prices_the_whole_request():
    # 200,000 input tokens fall in (128K, 256K]: every token at ¥2.4 in, ¥20 out.
    c = cost(Usage(200_000, 1_000), "qwen-plus")
    assert c.tier == 1
    assert c.amount == (200_000 * D("2.4") + 1_000 * D(20)) / 1_000_000


def test_tier_boundary_is_inclusive():
    at_edge = cost(Usage(131_072, 0), "qwen-plus")
    above = cost(Usage(131_073, 0), "qwen-plus")
    assert (at_edge.tier, above.tier) == (0, 1)
    assert at_edge.amount == 131_072 * D("0.8") / 1_000_000
    assert above.amount == 131_073 * D("2.4") / 1_000_000


def test_cached_tokens_at_cache_price():
    # Implicit hit: 20 % of input unless the tier prints its own price.
    c = cost({"prompt_tokens": 3019, "completion_tokens": 104,
              "prompt_tokens_details": {"cached_tokens": 2048}}, "qwen-plus")
    expected = (971 * D("0.8") + 2048 * D("0.8") * D("0.2") + 104 * D(2)) / 1_000_000
    assert c.amount == expected
    printed = cost(Usage(10_000, 0, cached_tokens=8_000), "qwen-flash")
    assert printed.amount == (2_000 * D("0.15") + 8_000 * D("0.03")) / 1_000_000
    intl = cost(Usage(10_000, 0, cached_tokens=8_000), "qwen3-coder-plus", region="intl")
    assert intl.amount == (2_000 * D(1) + 8_000 * D("0.1")) / 1_000_000


def test_explicit_cache_creation_and_hits():
    c = cost(Usage(5_000, 0, cached_tokens=1_000, cache_creation_tokens=2_000,
                   cache_type="explicit"), "qwen-plus")
    expected = (2_000 * D("0.8") + 1_000 * D("0.8") * D("0.1")
                + 2_000 * D("0.8") * D("1.25")) / 1_000_000
    assert c.amount == expected


def test_thinking_prices_the_whole_output():
    # Thinking mode: reasoning + answer at the thinking price (¥8, not ¥2).
    c = cost(Usage(1_000, 500, reasoning_tokens=300), "qwen-plus")
    assert c.thinking and c.amount == (1_000 * D("0.8") + 500 * D(8)) / 1_000_000
    # Thinking on but no reasoning produced: the non-thinking price (ML26).
    assert cost(Usage(1_000, 500), "qwen-plus").amount == (800 + 1000) / D(1_000_000)
    # ... even when the caller says thinking=True (issue #12: ¥0.0026, not ¥0.0056)
    assert cost(Usage(2_000, 500), "qwen-plus", thinking=True).amount == D("0.0026")
    assert not cost(Usage(2_000, 500), "qwen-plus", thinking=True).thinking
    # Thinking-only models always use the thinking price.
    assert cost(Usage(1_000, 500), "qwq-plus").amount == (1_600 + 2_000) / D(1_000_000)


def test_batch_is_half_price_without_cache_discount():
    c = cost(Usage(1_000, 500, cached_tokens=400), "qwen-plus", batch=True)
    assert c.amount == (1_000 * D("0.8") + 500 * D(2)) * D("0.5") / 1_000_000
    unknown = cost(Usage(1_000, 500), "qwen3-coder-plus", batch=True)
    assert not unknown.priced and "batch" in unknown.unpriced


def test_regions_and_currencies():
    intl = cost(Usage(1_000_000, 1_000_000), "qwen-max", region="intl")
    assert (intl.amount, intl.currency) == (D("8.0"), "USD")
    cn = cost(Usage(1_000_000, 1_000_000), "qwen-max", region="cn")
    assert (cn.amount, cn.currency) == (D("12.0"), "CNY")


def test_omni_media_and_audio_output_prices():
    c = cost(Usage(3_000, 1_000, image_tokens=1_000, audio_tokens=1_000), "qwen-omni-turbo")
    expected = (1_000 * D("0.4") + 1_000 * D("1.5") + 1_000 * D(25) + 1_000 * D("4.5"))
    assert c.amount == expected / 1_000_000
    # The worked example of the Omni page: 1K text + 1K image in, 1K text + 1K audio out:
    # audio output ¥0.05 per 1K and its text part free -> ¥0.0004 + ¥0.0015 + ¥0.05 = ¥0.0519.
    spoken = cost(Usage(2_000, 2_000, image_tokens=1_000, output_audio_tokens=1_000),
                  "qwen-omni-turbo")
    assert spoken.amount == D("0.0519")
    assert cost(Usage(2_000, 2_000, image_tokens=1_000, output_audio_tokens=1_000),
                "qwen-omni-turbo", batch=True).amount == D("0.02595")


def test_unpriced_is_never_zero():
    c = cost(Usage(1_000, 10, reasoning_tokens=5), "qwen-plus", region="intl")
    assert c.amount is None and not c.priced and "thinking" in c.unpriced
    none = cost(Usage(10, 10), "qwen-max-latest", region="intl")
    assert none.amount is None and "no price" in none.unpriced
    with pytest.raises(qm.NotOffered):
        cost(Usage(10, 10), "qwen-long", region="intl")


def test_historical_price():
    import datetime as dt

    old = cost({"input_tokens": 12, "output_tokens": 98}, "qwen-max", at=dt.date(2024, 8, 1))
    assert old.amount == (12 * 40 + 98 * 120) / D(1_000_000)


def test_estimate_low_and_high():
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "你是誰?"}]
    e = estimate_cost(messages, "qwen-plus", max_tokens=512)
    assert e.prompt_tokens == 22 and e.max_output_tokens == 512
    assert e.low.amount == 22 * D("0.8") / 1_000_000
    assert e.high.amount == (22 * D("0.8") + 512 * D(2)) / 1_000_000
    thinking = estimate_cost(messages, "qwen-plus", max_tokens=512, enable_thinking=True)
    assert thinking.max_output_tokens == 512 + 81_920
    assert thinking.high.amount == (22 * D("0.8") + (512 + 81_920) * D(8)) / 1_000_000
    default = estimate_cost(100, "qwen-plus")
    assert default.max_output_tokens == 32_768
    request = {"messages": messages, "max_tokens": 10}
    assert estimate_cost(request, "qwen-plus").high.amount == (22 * D("0.8") + 20) / 1_000_000
    with pytest.raises(qm.InvalidMessages):
        estimate_cost(messages, "qwen-plus", max_tokens=-5)


def test_estimate_takes_the_model_from_the_body():
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "你是誰?"}],
            "max_tokens": 10}
    assert estimate_cost(body) == estimate_cost(body, "qwen-plus")
    assert estimate_cost(body, "qwen-max").low.model == "qwen-max"  # the argument wins
    for nameless in ({"messages": body["messages"]}, body["messages"], 12):
        with pytest.raises(qm.InvalidArgument) as info:
            estimate_cost(nameless)
        assert "estimate_cost(model=)" in str(info.value)


# --- properties ---------------------------------------------------------------------------

counts = st.integers(0, 2_000_000)


@st.composite
def usages(draw):
    prompt = draw(st.integers(1, 1_000_000))
    cached = draw(st.integers(0, prompt))
    completion = draw(st.integers(0, 100_000))
    reasoning = draw(st.integers(0, completion))
    return Usage(prompt, completion, cached_tokens=cached, reasoning_tokens=reasoning)


MODELS = ["qwen-plus", "qwen-flash", "qwen3-max", "qwen-turbo", "qwen3-coder-plus", "qwq-plus"]


@given(usages(), st.sampled_from(MODELS), st.sampled_from(["completion_tokens", "reasoning"]),
       st.integers(1, 10_000))
def test_cost_is_monotone_in_output(usage, model, field, extra):
    from dataclasses import replace

    bigger = replace(usage, completion_tokens=usage.completion_tokens + extra,
                     reasoning_tokens=usage.reasoning_tokens + (extra if field == "reasoning"
                                                                else 0))
    a, b = cost(usage, model), cost(bigger, model)
    if a.priced and b.priced:
        assert b.amount >= a.amount


@given(usages(), st.sampled_from(MODELS), st.integers(1, 10_000))
def test_cost_is_monotone_in_input_within_a_tier(usage, model, extra):
    from dataclasses import replace

    bigger = replace(usage, prompt_tokens=usage.prompt_tokens + extra)
    a, b = cost(usage, model), cost(bigger, model)
    if a.priced and b.priced:
        assert b.amount >= a.amount  # crossing into a dearer tier only raises it further


@given(usages(), st.sampled_from(MODELS), st.integers(0, 1_000_000))
def test_uncached_tokens_never_cost_less_than_cached(usage, model, more):
    from dataclasses import replace

    cached_more = min(usage.prompt_tokens, usage.cached_tokens + more)
    a = cost(usage, model)
    b = cost(replace(usage, cached_tokens=cached_more), model)
    if a.priced and b.priced:
        assert b.amount <= a.amount


@given(st.sampled_from(MODELS), st.sampled_from(["cn", "intl"]), st.integers(0, 3))
def test_tier_boundaries_are_exact(model, region, index):
    offer = qm.resolve(model).offer(region)
    if index >= len(offer.tiers) or offer.tiers[index].upto is None:
        return
    tier = offer.tiers[index]
    assert offer.tier_for(tier.upto) is tier
    if index + 1 < len(offer.tiers):
        assert offer.tier_for(tier.upto + 1) is offer.tiers[index + 1]
    assert offer.tier_for(tier.above + 1) is tier


@given(usages(), st.sampled_from(MODELS))
def test_batch_is_half_of_the_undiscounted_price(usage, model):
    from dataclasses import replace

    batch = cost(usage, model, batch=True)
    plain = cost(replace(usage, cached_tokens=0), model)
    if batch.priced and plain.priced:
        assert batch.amount == plain.amount * qm.resolve(model).offer().batch


# --- usage parsing ------------------------------------------------------------------------

def test_usage_from_openai_and_dashscope():
    openai = Usage.parse({"prompt_tokens": 3019, "completion_tokens": 104, "total_tokens": 3123,
                          "prompt_tokens_details": {"cached_tokens": 2048},
                          "completion_tokens_details": {"reasoning_tokens": 50}})
    assert (openai.prompt_tokens, openai.cached_tokens, openai.reasoning_tokens) == (3019, 2048,
                                                                                     50)
    native = Usage.parse({"input_tokens": 12, "output_tokens": 98, "total_tokens": 110,
                          "input_tokens_details": {"image_tokens": 5, "text_tokens": 7}})
    assert (native.prompt_tokens, native.completion_tokens, native.image_tokens) == (12, 98, 5)
    explicit = Usage.parse({"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": {
        "cached_tokens": 4, "cache_creation_input_tokens": 5, "cache_type": "ephemeral"}})
    assert explicit.cache_type == "explicit" and explicit.cache_creation_tokens == 5


@pytest.mark.parametrize("raw", [
    {"completion_tokens": 3}, {"prompt_tokens": -1, "completion_tokens": 3},
    {"prompt_tokens": "10"}, {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}},
    {"input_tokens": 1, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 3}},
    "twelve", None, {"prompt_tokens": 1, "prompt_tokens_details": 5},
])
def test_bad_usage(raw):
    with pytest.raises(qm.UsageParseError):
        Usage.parse(raw)
