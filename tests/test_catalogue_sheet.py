"""Every priced row of catalogue-facts-2026-12.md and of the seeds, as the sheets print it.

Each row: (model, region, input tokens of the request, field, value). Fields are a tier's
price fields, a limit (``limits.X``), a rate limit (``rpm``/``tpm``/``rps``), ``batch``,
``currency``, ``kind`` (the source kind) or ``search`` (fee per call).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

import qwen_meter as qm

CAT = qm.default_catalogue()

SHEET_2026_12 = [
    # b1: Qwen3.8
    ("qwen3.8-max", "intl", 1, "input", "2"), ("qwen3.8-max", "intl", 900_000, "input", "2"),
    ("qwen3.8-max", "intl", 1, "output", "6"), ("qwen3.8-max", "intl", 1, "cache_hit", "0.25"),
    ("qwen3.8-max", "intl", 1, "cache_explicit_hit", "0.17"),
    ("qwen3.8-max", "intl", 1, "cache_creation", "2.5"),
    ("qwen3.8-max", "intl", 1, "limits.context", 1_000_000),
    ("qwen3.8-max", "intl", 1, "limits.max_input", 991_808),
    ("qwen3.8-max", "intl", 1, "limits.max_output", 131_072),
    ("qwen3.8-max", "intl", 1, "limits.max_reasoning", 262_144),
    ("qwen3.8-max", "intl", 1, "search", "0.01"),
    ("qwen3.8-max", "cn", 1, "input", "12"), ("qwen3.8-max", "cn", 1, "output", "36"),
    ("qwen3.8-max", "cn", 1, "cache_hit", "1.5"), ("qwen3.8-max", "cn", 1, "cache_creation", "15"),
    ("qwen3.8-max-0902", "intl", 1, "input", "2"), ("qwen3.8-max-0902", "intl", 1, "output", "6"),
    ("qwen3.8-max-0902", "intl", 1, "limits.context", 991_000),
    ("qwen3.8-max-0902", "intl", 1, "limits.max_output", 128_000),
    ("qwen3.8-max-0902", "intl", 1, "kind", "third-party"),
    ("qwen3.8-flash", "intl", 1, "input", "0.15"), ("qwen3.8-flash", "intl", 1, "output", "0.47"),
    ("qwen3.8-flash", "intl", 1, "cache_hit", "0.016"),
    ("qwen3.8-flash", "intl", 1, "cache_creation", "0.20"),
    ("qwen3.8-flash", "cn", 1, "input", "0.8"), ("qwen3.8-flash", "cn", 1, "output", "2.7"),
    ("qwen3.8-flash", "cn", 1, "cache_hit", "0.1"),
    ("qwen3.8-flash", "cn", 1, "cache_creation", "1.25"),
    ("qwen3.8-flash", "cn", 1, "limits.max_output", 131_072),
    ("qwen3.8-omni-flash", "intl", 1, "input", "0.15"),
    ("qwen3.8-omni-flash", "intl", 1, "output", "0.47"),
    ("qwen3.8-omni-flash", "intl", 1, "cache_hit", "0.016"),
    # b1: Qwen3.7
    ("qwen3.7-max", "cn", 1, "input", "12"), ("qwen3.7-max", "cn", 1, "output", "36"),
    ("qwen3.7-max", "cn", 1, "cache_hit", "2.4"),
    ("qwen3.7-max", "cn", 1, "limits.max_input", 991_808),
    ("qwen3.7-max", "cn", 1, "limits.max_output", 65_536),
    ("qwen3.7-max", "cn", 1, "limits.max_reasoning", 262_144),
    ("qwen3.7-max", "intl", 1, "input", "2.5"), ("qwen3.7-max", "intl", 1, "output", "7.5"),
    ("qwen3.7-max", "intl", 1, "output_thinking", "7.5"),
    ("qwen3.7-max", "intl", 1, "cache_hit", "0.5"),
    ("qwen3.7-max", "intl", 1, "cache_explicit_hit", "0.25"),
    ("qwen3.7-max", "intl", 1, "cache_creation", "3.125"),
    ("qwen3.7-max-2026-06-08", "intl", 1, "limits.max_reasoning", 262_144),
    ("qwen3.7-plus", "cn", 1, "input", "2"), ("qwen3.7-plus", "cn", 1, "output", "8"),
    ("qwen3.7-plus", "cn", 500_000, "input", "2"), ("qwen3.7-plus", "cn", 500_000, "output", "8"),
    ("qwen3.7-plus", "cn", 1, "kind", "third-party"),
    ("qwen3.7-flash", "cn", 32_768, "input", "0.2"),
    ("qwen3.7-flash", "cn", 32_768, "output", "0.8"),
    ("qwen3.7-flash", "cn", 32_769, "input", "0.6"),
    ("qwen3.7-flash", "cn", 32_769, "output", "2.4"),
    ("qwen3.7-flash", "cn", 262_145, "input", "1.2"),
    ("qwen3.7-flash", "cn", 262_145, "output", "4.8"),
    ("qwen3.7-flash", "cn", 1, "cache_hit", "0.04"),
    ("qwen3.7-flash", "cn", 1, "limits.max_output", 65_536),
    ("qwen3.7-flash-2026-07-15", "cn", 1, "input", "0.2"),
    # b1: Qwen3.6 / 3.5
    ("qwen3.6-plus", "cn", 262_144, "input", "2"), ("qwen3.6-plus", "cn", 262_144, "output", "12"),
    ("qwen3.6-plus", "cn", 262_145, "input", "8"), ("qwen3.6-plus", "cn", 262_145, "output", "48"),
    ("qwen3.6-plus", "cn", 1, "cache_creation", "2.5"),
    ("qwen3.6-plus", "cn", 262_145, "cache_creation", "10"),
    ("qwen3.6-plus", "intl", 1, "input", "0.50"), ("qwen3.6-plus", "intl", 1, "output", "3.00"),
    ("qwen3.6-plus", "intl", 262_145, "input", "2"),
    ("qwen3.6-plus", "intl", 262_145, "output", "6"),
    ("qwen3.6-plus", "intl", 1, "cache_explicit_hit", "0.05"),
    ("qwen3.6-plus", "intl", 262_145, "cache_explicit_hit", "0.20"),
    ("qwen3.6-plus-2026-04-02", "cn", 1, "input", "2"),
    ("qwen3.6-flash", "global", 1, "input", "0.165"),
    ("qwen3.6-flash", "global", 1, "output", "0.99"),
    ("qwen3.6-flash", "global", 262_145, "input", "0.66"),
    ("qwen3.6-flash", "global", 262_145, "output", "3.961"),
    ("qwen3.6-flash", "global", 1, "limits.max_reasoning", 131_072),
    ("qwen3.6-max-preview", "intl", 1, "limits.context", 262_144),
    ("qwen3.6-max-preview", "intl", 1, "limits.max_output", 65_536),
    ("qwen3.6-max-preview", "intl", 1, "limits.max_reasoning", 131_072),
    ("qwen3.5-flash", "intl", 1, "input", "0.10"), ("qwen3.5-flash", "intl", 1, "output", "0.40"),
    ("qwen3.5-flash", "intl", 1, "cache_hit", "0.02"),
    # b2: Global scope, batch per region, web search
    ("qwen-plus", "global", 1, "input", "0.115"), ("qwen-plus", "global", 1, "output", "0.287"),
    ("qwen-plus", "global", 1, "cache_creation", "0.144"),
    ("qwen-plus", "global", 1, "cache_explicit_hit", "0.012"),
    ("qwen-plus", "eu", 1, "input", "0.115"),
    ("qwen3-max", "intl", 1, "batch", None), ("qwen-flash", "intl", 1, "batch", "0.5"),
    ("qwen3-max", "cn", 1, "search", "0.004"),
    # a2: rate limits
    ("qwen3-max-2026-01-23", "cn", 1, "rpm", 600),
    ("qwen3-max-2026-01-23", "cn", 1, "tpm", 1_000_000),
    ("qwq-plus-2025-03-05", "cn", 1, "rpm", 60), ("qwq-plus-2025-03-05", "cn", 1, "tpm", 100_000),
    ("qwen-max-2024-04-28", "cn", 1, "rpm", 60), ("qwen-max-2024-04-03", "cn", 1, "tpm", 100_000),
    ("text-embedding-v4", "cn", 1, "rps", 30), ("text-embedding-v3", "cn", 1, "rps", 30),
    # a4: values the catalogue lacked
    # The Singapore rows ML26 prints in CNY (at ~7.34 CNY/USD) as the USD list prices
    # models.dev PR #2122 prints; where no USD figure is published the offer is unpriced.
    ("qwen3-32b", "intl", 1, "input", "0.16"), ("qwen3-32b", "intl", 1, "output", "0.64"),
    ("qwen3-30b-a3b", "intl", 1, "input", "0.2"), ("qwen3-30b-a3b", "intl", 1, "output", "0.8"),
    ("qwen3-30b-a3b", "intl", 1, "output_thinking", "2.4"),
    ("qwen3-14b", "intl", 1, "input", "0.35"), ("qwen3-14b", "intl", 1, "output", "1.4"),
    ("qwen3-14b", "intl", 1, "output_thinking", "4.2"),
    ("qwen3-8b", "intl", 1, "input", "0.18"), ("qwen3-8b", "intl", 1, "output", "0.7"),
    ("qwen3-8b", "intl", 1, "output_thinking", "2.1"),
    ("qwen3-235b-a22b", "intl", 1, "input", "0.7"),
    ("qwen3-235b-a22b", "intl", 1, "output_thinking", "8.4"),
    ("qwen3-14b", "intl", 1, "rpm", 600), ("qwen3-14b", "intl", 1, "tpm", 1_000_000),
    ("qwen2.5-72b-instruct", "intl", 1, "input", "1.4"),
    ("qwen2.5-72b-instruct", "intl", 1, "output", "5.6"),
    ("qwen2.5-32b-instruct", "intl", 1, "input", "0.7"),
    ("qwen2.5-14b-instruct", "intl", 1, "input", "0.35"),
    ("qwen2.5-14b-instruct", "intl", 1, "output", "1.4"),
    ("qwen2.5-7b-instruct", "intl", 1, "input", "0.175"),
    ("qwen2.5-7b-instruct", "intl", 1, "output", "0.7"),
    ("qwen2.5-7b-instruct", "intl", 1, "rpm", 1200),
    ("qwen2.5-7b-instruct-1m", "intl", 1, "tpm", 5_000_000),
    ("qwen-vl-max", "intl", 1, "input", "0.8"), ("qwen-vl-max", "intl", 1, "output", "3.2"),
    ("qwen-vl-plus", "intl", 1, "input", "0.21"), ("qwen-vl-plus", "intl", 1, "output", "0.63"),
    ("qwen3-vl-flash", "intl", 1, "input", "0.05"),
    ("qwen3-vl-flash", "intl", 100_000, "output", "0.6"),
    ("qwen3-vl-flash", "intl", 200_000, "input", "0.12"),
    ("qwen-mt-plus", "intl", 1, "input", "2.46"), ("qwen-mt-plus", "intl", 1, "output", "7.37"),
    ("qwen-mt-plus", "intl", 1, "tpm", 23_797),
    ("qwen-mt-turbo", "intl", 1, "input", "0.16"), ("qwen-mt-turbo", "intl", 1, "output", "0.49"),
    ("qwen-mt-turbo", "intl", 1, "tpm", 19_020), ("qwen-mt-turbo", "intl", 1, "rpm", 60),
    *[(m, "intl", 1, "currency", "USD") for m in (
        "qwen-mt-plus", "qwen-mt-turbo", "qwen-omni-turbo", "qwen-vl-max", "qwen-vl-plus",
        "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "qwen2.5-32b-instruct",
        "qwen2.5-72b-instruct", "qwen2.5-7b-instruct-1m", "qwen2.5-14b-instruct-1m", "qwen3-4b",
        "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b",
        "qwen3-omni-flash", "qwen3-vl-flash")],
    ("qwen-mt-flash", "cn", 1, "input", "0.7"), ("qwen-mt-flash", "cn", 1, "output", "1.95"),
    ("qwen-mt-lite", "cn", 1, "input", "0.6"), ("qwen-mt-lite", "cn", 1, "output", "1.6"),
    ("qwen2.5-omni-7b", "cn", 1, "input", "0.6"), ("qwen2.5-omni-7b", "cn", 1, "input_audio", "38"),
    ("qwen2.5-omni-7b", "cn", 1, "input_image", "2"), ("qwen2.5-omni-7b", "cn", 1, "output", "2.4"),
    ("qwen2.5-omni-7b", "cn", 1, "output_media_input", "6"),
    ("qwen2.5-omni-7b", "cn", 1, "output_audio", "76"),
    ("qwen2.5-omni-7b", "cn", 1, "limits.context", 32_768),
    ("qwen2.5-omni-7b", "cn", 1, "limits.max_input", 30_720),
    ("qwen2.5-omni-7b", "cn", 1, "limits.max_output", 2_048),
    ("text-embedding-v4", "intl", 1, "input", "0.07"),
    ("text-embedding-v4", "intl", 1, "kind", "third-party"),
    ("text-embedding-v2", "cn", 1, "input", "0.7"),
    ("qwen-vl-plus-2025-05-07", "intl", 1, "rpm", 120),
    ("qwen-turbo-2025-04-28", "cn", 1, "input", "0.3"),
    ("qwen-turbo-2025-04-28", "cn", 1, "output", "0.6"),
    ("qwen-turbo-2025-04-28", "cn", 1, "output_thinking", "3"),
    # a1 #3-#6: prices in effect today
    ("qwen-max", "intl", 1, "input", "1.6"), ("qwen-max", "intl", 1, "output", "6.4"),
    ("qwen-plus", "intl", 1, "input", "0.4"), ("qwen-turbo", "intl", 1, "input", "0.05"),
    ("qwen-max", "cn", 1, "input", "2.4"), ("qwen-max", "cn", 1, "output", "9.6"),
]

# Seeds 000-003 (and the legacy rows of catalogue-facts.md built from them): mainland CNY.
SEEDS = [
    ("qwen-max-0428", "cn", 1, "input", "40"), ("qwen-max-0428", "cn", 1, "output", "120"),
    ("qwen-max-0403", "cn", 1, "input", "40"), ("qwen-max-0403", "cn", 1, "output", "120"),
    ("qwen-max-0107", "cn", 1, "input", "40"), ("qwen-max-0107", "cn", 1, "output", "120"),
    ("qwen-max-1201", "cn", 1, "input", "120"), ("qwen-max-1201", "cn", 1, "output", "120"),
    ("qwen-max-1201", "cn", 1, "limits.max_output", 2048),
    ("qwen-max-longcontext", "cn", 1, "input", "40"),
    ("qwen-max-longcontext", "cn", 1, "output", "120"),
    ("qwen-max-longcontext", "cn", 1, "limits.context", 30_000),
    ("qwen-max-longcontext", "cn", 1, "limits.max_input", 28_000),
    ("qwen-max-longcontext", "cn", 1, "rpm", 5),
    ("qwen-max-longcontext", "cn", 1, "tpm", 1_500_000),
    ("qwen-turbo-0206", "cn", 1, "input", "2"), ("qwen-turbo-0624", "cn", 1, "output", "6"),
    ("qwen-plus-0206", "cn", 1, "input", "4"), ("qwen-plus-0624", "cn", 1, "output", "12"),
    ("qwen-plus-0723", "cn", 1, "input", "4"), ("qwen-plus-0723", "cn", 1, "tpm", 60_000),
    ("qwen-turbo-0206", "cn", 1, "tpm", 18_000), ("qwen-turbo-0624", "cn", 1, "tpm", 150_000),
    ("qwen-v1", "cn", 1, "input", "2"), ("qwen-plus-v1", "cn", 1, "input", "4"),
    ("qwen-long", "cn", 1, "input", "0.5"), ("qwen-long", "cn", 1, "output", "2"),
    ("qwen2-72b-instruct", "cn", 1, "input", "5"), ("qwen2-72b-instruct", "cn", 1, "output", "10"),
    ("qwen1.5-110b-chat", "cn", 1, "input", "7"), ("qwen1.5-110b-chat", "cn", 1, "output", "14"),
    ("qwen2.5-coder-32b", "cn", 1, "limits.context", 131_072),
    ("qwen2.5-coder-32b", "cn", 1, "limits.max_output", 8_192),
    ("qwen2.5-coder-32b", "cn", 1, "kind", "third-party"),
    ("qwen-audio-turbo", "cn", 1, "limits.context", 8_192),
    ("qwen-audio-turbo", "cn", 1, "limits.max_output", 2_048),
    ("text-embedding-v3", "cn", 1, "limits.context", 8_192),
]

# Names the sheets mention that must resolve (priced or not).
NAMES = [
    "qwen-omni-turbo-2025-01-19", "qwen-omni-turbo-0119", "qwen2-7b-instruct",
    "qwen1.5-72b-chat", "qwen1.5-32b-chat", "qwen1.5-14b-chat", "qwen1.5-7b-chat",
    "text-embedding-v1", "text-embedding-v2", "qwen-audio-turbo", "qwen2.5-coder-32b",
    "qwen3.7-max-2026-05-17", "qwen3.7-max-2026-05-20", "qwen3.7-max-preview",
    "qwen3.7-plus-2026-05-26", "qwen3.6-flash-2026-04-16", "qwen3.5-flash-2026-02-23",
    "qwen3.5-plus-2026-02-15", "qwen3.5-plus-2026-04-20", "qwen3.5-397b-a17b",
    "qwen3.5-122b-a10b", "qwen3.6-27b", "qwen3.6-35b-a3b", "qwen3.8-max-0902",
    "qwq-32b", "qwen2.5-72b-instruct", "qwen2.5-32b-instruct", "qwen2-72b-instruct",
]


def value_of(model: str, region: str, tokens: int, field: str):
    offer = CAT.resolve(model).offer(region)
    if field.startswith("limits."):
        return getattr(offer.limits, field.split(".", 1)[1])
    if field in ("rpm", "tpm", "rps"):
        return getattr(offer.rate_limits, field)
    if field == "batch":
        return offer.batch
    if field == "kind":
        return offer.source.kind
    if field == "currency":
        return offer.currency
    if field == "search":
        return offer.tool_fees["search"].per_call
    return getattr(offer.tier_for(tokens), field)


@pytest.mark.parametrize(("model", "region", "tokens", "field", "expected"),
                         SHEET_2026_12 + SEEDS)
def test_sheet_row(model, region, tokens, field, expected):
    got = value_of(model, region, tokens, field)
    if isinstance(expected, str) and field not in ("kind", "currency"):
        assert got == Decimal(expected), (model, region, field, got)
    else:
        assert got == expected, (model, region, field, got)


@pytest.mark.parametrize("name", NAMES)
def test_sheet_names_resolve(name):
    spec = CAT.resolve(name)
    assert spec.matched_rule is None, f"{name} only matched a name rule"


@pytest.mark.parametrize("model", ["qwen3-4b", "qwen3-1.7b", "qwen2.5-7b-instruct-1m",
                                   "qwen2.5-14b-instruct-1m", "qwen-omni-turbo",
                                   "qwen3-omni-flash"])
def test_singapore_rows_without_a_usd_price_are_unpriced_with_a_reason(model):
    # ML26 prints these only in CNY: an unpriced USD cost, never a CNY figure labelled USD.
    c = qm.cost(qm.Usage(1000, 100), model, region="intl")
    assert c.amount is None and c.currency == "USD" and "no price" in c.unpriced
    assert "USD list price found" in CAT.resolve(model).offer("intl").note


def test_priced_seed_rows_cost_what_the_sheet_says():
    # 1,000 in + 1,000 out at seed 001's per-1K prices
    assert qm.cost(qm.Usage(1000, 1000), "qwen-max-1201").amount == Decimal("0.24")
    assert qm.cost(qm.Usage(1000, 1000), "qwen-max-0428").amount == Decimal("0.16")
    assert qm.cost(qm.Usage(1000, 1000), "qwen-max-longcontext").amount == Decimal("0.16")
