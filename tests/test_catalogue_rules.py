"""Hand-computed costs for the December 2026 billing rules, families and regions (issue #12)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter import Usage, cost, estimate_cost
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.limiter.values import RateLimit

M = D(1_000_000)
CAT = qm.default_catalogue()


# --- thinking on, no reasoning produced ----------------------------------------------------

@pytest.mark.parametrize(("model", "region", "expected"), [
    ("qwen-plus", "cn", (2000 * D("0.8") + 500 * D(2)) / M),            # ¥0.0026, not ¥0.0056
    ("qwen-plus-latest", "intl", (2000 * D("0.4") + 500 * D("1.2")) / M),
    ("qwen-turbo", "cn", (2000 * D("0.3") + 500 * D("0.6")) / M),
    ("qwen3-8b", "cn", (2000 * D("0.5") + 500 * D(2)) / M),
    ("qwen-plus", "intl", (2000 * D("0.4") + 500 * D("1.2")) / M),    # was unpriced
    ("qwen3-max", "intl", (2000 * D("1.2") + 500 * D(6)) / M),        # was unpriced
])
def test_thinking_without_reasoning_is_billed_non_thinking(model, region, expected):
    c = cost(Usage(2000, 500), model, region=region, thinking=True)
    assert c.amount == expected and not c.thinking


def test_thinking_with_reasoning_keeps_the_thinking_price():
    c = cost(Usage(2000, 500, reasoning_tokens=200), "qwen-plus", thinking=True)
    assert c.amount == (2000 * D("0.8") + 500 * D(8)) / M and c.thinking
    # thinking-only models have no other price
    assert cost(Usage(1000, 500), "qwq-plus", thinking=True).amount == (1600 + 2000) / M


def test_omni_thinking_with_media_input_uses_the_media_output_price():
    usage = Usage(2000, 1500, image_tokens=1000, reasoning_tokens=500)
    c = cost(usage, "qwen3-omni-flash")
    assert c.amount == D("0.02415")  # 1k text × 1.8 + 1k image × 3.3 + 1.5k × 12.7
    assert cost(Usage(2000, 1500, reasoning_tokens=500), "qwen3-omni-flash").amount == \
        (2000 * D("1.8") + 1500 * D("6.9")) / M


# --- snapshots --------------------------------------------------------------------------------

def test_snapshots_have_their_own_rate_limits_and_no_batch():
    q3 = CAT.resolve("qwen3-max-2026-01-23").offer("cn")
    assert (q3.rate_limits.rpm, q3.rate_limits.tpm) == (600, 1_000_000)
    qwq = CAT.resolve("qwq-plus-2025-03-05").offer("cn")
    assert (qwq.rate_limits.rpm, qwq.rate_limits.tpm) == (60, 100_000)
    for name in ("qwen3-max-2026-01-23", "qwq-plus-2025-03-05", "qwen-plus-2025-12-01",
                 "qwen-flash-2025-07-28", "qwen3-coder-plus-2025-09-23"):
        c = cost(Usage(1000, 100), name, batch=True)
        assert c.amount is None and "batch" in c.unpriced, name
    # ... but the same list price as their stable name
    assert cost(Usage(1000, 100), "qwen3-max-2026-01-23").amount == \
        cost(Usage(1000, 100), "qwen3-max").amount
    assert RateLimiter().limits_for("qwen-flash-2025-07-28") == RateLimit(None, None)
    assert RateLimiter().limits_for("qwen3-max-2026-01-23") == RateLimit(600, 1_000_000)


def test_batch_support_differs_per_region():
    assert cost(Usage(1000, 100), "qwen3-max", region="intl", batch=True).amount is None
    assert cost(Usage(1000, 1000), "qwen-flash", region="intl", batch=True).amount == \
        (1000 * D("0.05") + 1000 * D("0.4")) / 2 / M
    for name in ("qwen-max", "qwen-plus", "qwen-flash", "qwen-turbo"):
        assert CAT.resolve(name).offer("intl").batch == D("0.5"), name


def test_batch_chat_api_endpoint():
    assert CAT.is_batch_chat_url("https://batch.dashscope.aliyuncs.com/compatible-mode/v1")
    assert not CAT.is_batch_chat_url("https://dashscope.aliyuncs.com/compatible-mode/v1")
    c = cost(Usage(1000, 1000, cached_tokens=500), "qwen-plus", batch_chat=True)
    assert c.amount == (1000 * D("0.8") + 1000 * D(2)) / 2 / M and c.batch
    assert cost(Usage(10, 10), "qwen-max-latest", batch_chat=True).amount is None
    assert cost(Usage(10, 10), "qwen-plus", region="intl", batch_chat=True).amount is None


# --- history by effective date ----------------------------------------------------------------

@pytest.mark.parametrize(("model", "when", "price_in", "price_out"), [
    ("qwen-max", dt.date(2025, 6, 1), "1.6", "6.4"),
    ("qwen-max", dt.date(2025, 4, 22), "1.6", "6.4"),
    ("qwen-max", dt.date(2025, 4, 21), "10", "30"),
    ("qwen-max", dt.date(2026, 7, 31), "1.6", "6.4"),
    ("qwen-plus", dt.date(2025, 6, 1), "0.4", "1.2"),
    ("qwen-plus", dt.date(2025, 1, 1), "3", "9"),
    ("qwen-turbo", dt.date(2025, 6, 1), "0.05", "0.2"),
    ("qwen-turbo", dt.date(2025, 1, 1), "0.4", "1.2"),
])
def test_intl_history_by_effective_date(model, when, price_in, price_out):
    c = cost(Usage(1000, 1000), model, region="intl", at=when)
    assert c.amount == (1000 * D(price_in) + 1000 * D(price_out)) / M
    assert c.effective <= when or c.effective == min(
        o.effective_date for o in CAT.resolve(model).offers["intl"])


def test_cn_qwen_max_history():
    assert CAT.resolve("qwen-max").offer("cn", dt.date(2025, 10, 30)).tiers[0].input == D("2.4")
    assert CAT.resolve("qwen-max").offer("cn", dt.date(2024, 11, 1)).tiers[0].input == D(20)
    assert CAT.resolve("qwen-max").offer("cn", dt.date(2024, 8, 1)).tiers[0].input == D(40)


# --- per-second limits ------------------------------------------------------------------------

def test_per_second_limits_stay_per_second():
    rl = CAT.resolve("text-embedding-v4").offer("cn").rate_limits
    assert (rl.rps, rl.rpm, rl.tpm) == (30, 1800, 1_200_000) and rl.per_second
    assert RateLimiter().limits_for("text-embedding-v4") == RateLimit(1800, 1_200_000, rps=30)
    assert not CAT.resolve("qwen-plus").offer("cn").rate_limits.per_second


def test_limiter_enforces_a_per_second_limit_without_smoothing():
    limiter = RateLimiter(limits={"text-embedding-v4": RateLimit(1800, None, rps=30)},
                          smooth=False)
    granted = 0
    with pytest.raises(qm.RateLimited):
        for _ in range(31):
            limiter.acquire("text-embedding-v4", 10, wait=False)
            granted += 1
    assert granted == 30


# --- thinking budgets, n, search --------------------------------------------------------------

def test_estimate_includes_the_models_thinking_budget():
    est = estimate_cost(1000, "qwen3.7-max", max_tokens=1000, enable_thinking=True)
    assert est.max_output_tokens == 1000 + 262_144
    assert est.high.amount == (1000 * D(12) + (1000 + 262_144) * D(36)) / M
    capped = estimate_cost(1000, "qwen3.7-max", max_tokens=1000, enable_thinking=True,
                           thinking_budget=1000)
    assert capped.high.amount == (1000 * D(12) + 2000 * D(36)) / M
    two = estimate_cost(1000, "qwen3.7-max", max_tokens=1000, enable_thinking=True,
                        thinking_budget=1000, n=2)
    assert two.high.amount == (1000 * D(12) + 4000 * D(36)) / M
    # qwen-plus's thinking price applies to the high end (reasoning is assumed)
    plus = estimate_cost(1000, "qwen-plus", max_tokens=100, enable_thinking=True)
    assert plus.high.amount == (1000 * D("0.8") + (100 + 81_920) * D(8)) / M
    for name, budget in (("qwen3.6-flash", 131_072), ("qwen3.6-plus", 81_920),
                         ("qwen3.5-plus", 81_920), ("qwen3.7-plus", 262_144),
                         ("qwen3.8-max", 262_144), ("qwen-turbo", 38_912)):
        spec = CAT.resolve(name)
        assert spec.offer(spec.regions[0]).limits.max_reasoning == budget, name
    with pytest.raises(qm.InvalidMessages):
        estimate_cost(10, "qwen-plus", n=0)
    with pytest.raises(qm.InvalidMessages):
        estimate_cost(10, "qwen-plus", thinking_budget=0)


def test_web_search_fees():
    native = {"input_tokens": 100, "output_tokens": 10,
              "plugins": {"search": {"count": 2, "strategy": "agent"}}}
    assert Usage.parse(native).search_count == 2
    c = cost(native, "qwen3-max")
    assert c.amount == (100 * D("2.5") + 10 * D(10)) / M + 2 * D("0.004")
    assert c.parts["search"] == D("0.008")
    compat = {"prompt_tokens": 100, "completion_tokens": 10,
              "x_tools": {"web_search": {"count": 1}}}
    assert cost(compat, "qwen3.8-max", region="intl").amount == \
        (100 * D(2) + 10 * D(6)) / M + D("0.01")
    assert cost(Usage(100, 10), "qwen3.8-max", region="intl", searches=3).parts["search"] == \
        D("0.03")
    # a search on a model without a published fee is unpriced, never free
    assert cost(Usage(100, 10), "qwen-plus", searches=1).amount is None
    est = estimate_cost(1000, "qwen3.8-max", region="intl", max_tokens=100,
                        enable_thinking=False, search=True)
    assert est.high.amount == (1000 * D(2) + 100 * D(6)) / M + D("0.01")
    assert est.low.amount == 1000 * D(2) / M
    with pytest.raises(qm.UsageParseError):
        Usage.parse({"input_tokens": 1, "plugins": {"search": {"count": -1}}})


def test_explicit_cache_prices_for_3_7_and_3_8():
    hit = Usage(10_000, 100, cached_tokens=4000, cache_type="explicit")
    assert cost(hit, "qwen3.7-max", region="intl").amount == \
        (6000 * D("2.5") + 4000 * D("0.25") + 100 * D("7.5")) / M
    create = Usage(10_000, 0, cache_creation_tokens=10_000, cache_type="explicit")
    assert cost(create, "qwen3.7-max", region="intl").amount == 10_000 * D("3.125") / M
    assert cost(hit, "qwen3.8-max", region="intl").amount == \
        (6000 * D(2) + 4000 * D("0.17") + 100 * D(6)) / M
    assert cost(create, "qwen3.8-max", region="cn").amount == 10_000 * D(15) / M
    implicit = Usage(10_000, 0, cached_tokens=4000)
    assert cost(implicit, "qwen3.8-flash", region="intl").amount == \
        (6000 * D("0.15") + 4000 * D("0.016")) / M


# --- regions ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "region"), [
    ("https://dashscope.aliyuncs.com/compatible-mode/v1", "cn"),
    ("https://dashscope.aliyuncs.com/api/v1/services/aigc/text-generation/generation", "cn"),
    ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "intl"),
    ("https://DASHSCOPE-INTL.aliyuncs.com/api/v1", "intl"),
    ("https://dashscope-us.aliyuncs.com/compatible-mode/v1", "global"),
    ("https://ws-123.eu-central-1.maas.aliyuncs.com/compatible-mode/v1", "eu"),
    ("https://ws-9.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1", "intl"),
    ("https://batch.dashscope.aliyuncs.com/compatible-mode/v1", "cn"),
    ("http://127.0.0.1:8000/compatible-mode/v1", None),
    ("https://evil-dashscope.aliyuncs.com.example/v1", None),
    ("https://eu-central-1.maas.aliyuncs.com/v1", None),
    ("", None),
])
def test_region_for_url(url, region):
    assert CAT.region_for_url(url) == region


def test_every_region_has_an_endpoint_and_currency():
    for region, entry in CAT.regions.items():
        assert entry["base_url"].startswith("https://"), region
        assert entry["currency"] in ("CNY", "USD")


def test_global_and_frankfurt_prices():
    g = cost(Usage(1000, 1000), "qwen-plus", region="global")
    assert g.amount == (1000 * D("0.115") + 1000 * D("0.287")) / M and g.currency == "USD"
    eu = cost(Usage(1000, 1000), "qwen-plus", region="eu")
    assert eu.amount == g.amount and eu.region == "eu"
    assert cost(Usage(300_000, 0), "qwen3.6-flash", region="global").amount == \
        300_000 * D("0.66") / M


def test_third_party_figures_say_so():
    c = cost(Usage(3500, 1500), "qwen3.6-plus")
    assert c.amount == D("0.025") and c.source_kind == "third-party"
    assert c.as_dict()["source_kind"] == "third-party"
    assert cost(Usage(10, 10), "qwen-max").source_kind == "official"


# --- invariants -------------------------------------------------------------------------------

PRICED = [(spec.name, region) for spec in CAT if spec.thinking == "hybrid"
          for region, offers in spec.offers.items() if offers[0].tiers]


@given(pair=st.sampled_from(PRICED), prompt=st.integers(1, 2_000_000),
       out=st.integers(0, 100_000))
def test_thinking_flag_without_reasoning_never_changes_the_price(pair, prompt, out):
    model, region = pair
    usage = Usage(prompt, out)
    assert cost(usage, model, region=region, thinking=True).amount == \
        cost(usage, model, region=region, thinking=False).amount


HISTORIES = [(spec.name, region) for spec in CAT for region, offers in spec.offers.items()
             if len(offers) > 1]


@given(pair=st.sampled_from(HISTORIES),
       day=st.dates(dt.date(2023, 1, 1), dt.date(2026, 12, 31)))
def test_at_picks_the_offer_in_effect_that_day(pair, day):
    model, region = pair
    offers = CAT.resolve(model).offers[region]
    offer = CAT.resolve(model).offer(region, day)
    in_effect = [o for o in offers if o.effective_date <= day]
    assert offer is (max(in_effect, key=lambda o: o.effective_date) if in_effect else offers[-1])
