"""Invariants over the whole shipped catalogue, and the seed documents' figures in their era."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.catalogue.core import Catalogue, default_catalogue

CATALOGUE = default_catalogue()
OFFERS = [(spec, offer) for spec in CATALOGUE for offers in spec.offers.values()
          for offer in offers]


def test_catalogue_is_large_and_offers_both_regions():
    assert len(CATALOGUE) >= 90
    regions = {offer.region for _, offer in OFFERS}
    assert {"cn", "intl", "global", "eu"} <= regions


@pytest.mark.parametrize("name", CATALOGUE.names())
def test_every_model_resolves_and_counts(name):
    spec = CATALOGUE.resolve(name)
    assert spec.name == name
    assert qm.count_tokens("hi", name).tokens == 1
    for alias in spec.aliases:
        assert CATALOGUE.resolve(alias) is spec


def test_every_offer_has_source_url_and_date():
    for spec, offer in OFFERS:
        assert offer.source.url.startswith("https://"), spec.name
        assert dt.date(2023, 1, 1) <= offer.as_of <= dt.date(2026, 12, 31), spec.name
        if offer.rate_limits:
            assert offer.rate_limits.source.url.startswith("https://")


def test_limits_are_consistent():
    for spec, offer in OFFERS:
        limits = offer.limits
        if limits.context and limits.max_input:
            assert limits.max_input <= limits.context, spec.name
        if limits.max_input_thinking and limits.max_input:
            assert limits.max_input_thinking <= limits.max_input, spec.name


def test_tiers_are_contiguous_and_cover_the_input_limit():
    for spec, offer in OFFERS:
        if not offer.tiers:
            continue
        assert offer.tiers[0].above == 0
        for a, b in zip(offer.tiers, offer.tiers[1:], strict=False):
            assert a.upto == b.above, spec.name
        last = offer.tiers[-1].upto
        if last is not None and offer.limits.max_input:
            assert last >= offer.limits.max_input, spec.name
        currency = {"cn": "CNY"}.get(offer.region, "USD")
        assert offer.currency == currency, spec.name


def test_history_is_ordered_newest_first():
    for spec in CATALOGUE:
        for offers in spec.offers.values():
            dates = [o.effective_date for o in offers]
            assert dates == sorted(dates, reverse=True), spec.name


@pytest.mark.parametrize(("model", "when", "input_price", "output_price", "context"), [
    # Seed 001 (legacy billing, ~2024-07), per 1K tokens:
    # ¥0.04/0.12, ¥0.004/0.012, ¥0.002/0.006, ¥0.0005/0.002
    ("qwen-max", dt.date(2024, 8, 1), "40", "120", 8000),
    ("qwen-plus", dt.date(2024, 8, 1), "4", "12", 32000),
    ("qwen-turbo", dt.date(2024, 8, 1), "2", "6", 8000),
    ("qwen-long", dt.date(2024, 8, 1), "0.5", "2", 10_000_000),
    # Seed 000's ¥20/¥60 for qwen-max was the official price of late 2024 (ML24).
    ("qwen-max", dt.date(2024, 11, 1), "20", "60", 32768),
    # Today's prices (ML26).
    ("qwen-max", None, "2.4", "9.6", 32768),
    ("qwen-turbo", None, "0.3", "0.6", 1_000_000),
])
def test_seed_figures_in_their_era(model, when, input_price, output_price, context):
    offer = qm.resolve(model).offer("cn", at=when)
    assert offer.tiers[0].input == Decimal(input_price)
    assert offer.tiers[0].output == Decimal(output_price)
    assert offer.limits.context == context


def test_seed_rate_limits_in_their_era():
    assert qm.resolve("qwen-turbo").offer("cn", dt.date(2024, 8, 1)).rate_limits.rpm == 500
    assert qm.resolve("qwen-plus").offer("cn", dt.date(2024, 8, 1)).rate_limits.tpm == 200000
    assert qm.resolve("qwen-max").offer("cn").rate_limits.rpm == 1200


def test_not_offered_region():
    with pytest.raises(qm.NotOffered, match="offered in: cn"):
        qm.resolve("qwen-long").offer("intl")


def test_snapshot_with_its_own_entry_keeps_it():
    # A snapshot without its own entry: its stable name's prices, none of its rate limits.
    snap = qm.resolve("qwen-plus-2025-12-01")
    assert snap.name == "qwen-plus-2025-12-01"
    assert snap.offer("cn").tiers == qm.resolve("qwen-plus").offer("cn").tiers
    assert snap.offer("cn").rate_limits is None and snap.offer("cn").batch is None
    turbo = qm.resolve("qwen-turbo-2025-04-28")
    assert turbo.name == "qwen-turbo-2025-04-28"
    assert turbo.offer("intl").rate_limits.rpm == 60


# --- overrides and bad files --------------------------------------------------------------

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_override_changes_exactly_what_it_names(tmp_path):
    override = write(tmp_path, "mine.yaml", """
models:
  qwen-plus:
    regions:
      cn:
        rate_limits: {rpm: 77, tpm: 8888}
  my-finetune:
    family: qwen3
    template: dashscope-qwen3
    regions:
      cn:
        source: ML26
        limits: {context: 32768, max_input: 30720, max_output: 8192}
        price: {input: 1, output: 3}
""")
    base = Catalogue.load()
    mine = Catalogue.load(overrides=[override])
    plus_base, plus_mine = base.resolve("qwen-plus"), mine.resolve("qwen-plus")
    assert plus_mine.offer("cn").rate_limits.rpm == 77
    assert plus_mine.offer("cn").rate_limits.tpm == 8888
    assert plus_mine.offer("cn").tiers == plus_base.offer("cn").tiers
    assert plus_mine.offer("cn").limits == plus_base.offer("cn").limits
    assert plus_mine.offer("intl") == plus_base.offer("intl")
    assert mine.resolve("qwen-max").offer("cn") == base.resolve("qwen-max").offer("cn")
    assert qm.cost({"prompt_tokens": 1_000_000, "completion_tokens": 0}, "my-finetune",
                   catalogue=mine).amount == Decimal(1)


def test_override_from_environment(tmp_path, monkeypatch):
    override = write(tmp_path, "env.yaml", "models:\n  qwen-max:\n    regions:\n      cn:\n"
                                           "        price: {input: 9, output: 9}\n")
    monkeypatch.setenv("QWEN_METER_CATALOGUE", str(override))
    assert qm.resolve("qwen-max").offer("cn").tiers[0].input == Decimal(9)
    monkeypatch.delenv("QWEN_METER_CATALOGUE")
    assert qm.resolve("qwen-max").offer("cn").tiers[0].input == Decimal("2.4")


BASE_ENTRY = """
models:
  m:
    family: qwen3
    template: dashscope-qwen3
    regions:
      cn:
        source: ML26
        limits: {context: 1000, max_input: 900, max_output: 100}
"""


@pytest.mark.parametrize(("text", "field"), [
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: ML26, "
     "price: {input: -1, output: 2}}}}", "regions.cn.price.input"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: ML26, "
     "limits: {context: 100, max_input: 200}}}}", "regions.cn.limits.max_input"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: ML26, "
     "currency: EUR}}}", "regions.cn.currency"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {mars: {source: ML26}}}",
     "regions.mars"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: ML26, "
     "tiers: [{above: 0, upto: 10, input: 1}, {above: 20, upto: 30, input: 2}]}}}",
     "regions.cn.tiers[1].above"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: ML26, "
     "tiers: [{above: 0, upto: 10, input: 1}, {above: 5, upto: 30, input: 2}]}}}",
     "regions.cn.tiers[1].above"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, regions: {cn: {source: NOPE}}}",
     "regions.cn.source"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, thinking: maybe}", "thinking"),
    ("models:\n  m: {family: qwen3, template: dashscope-qwen3, colour: red}", "colour"),
])
def test_bad_override_is_rejected_at_load_naming_file_model_field(tmp_path, text, field):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(qm.CatalogueError) as info:
        Catalogue.load(overrides=[path])
    assert info.value.file == str(path)
    assert info.value.model == "m"
    assert info.value.field == field


def test_malformed_yaml_override(tmp_path):
    path = write(tmp_path, "broken.yaml", "models: {qwen-plus: [")
    with pytest.raises(qm.CatalogueError, match="malformed YAML") as info:
        Catalogue.load(overrides=[path])
    assert info.value.file == str(path)


PRICED = [(spec.name, region) for spec in CATALOGUE for region, offers in spec.offers.items()
          if offers[0].tiers and offers[0].rate_limits]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(PRICED), st.sampled_from(["rpm", "tpm", "input", "max_output"]),
       st.integers(1, 10**7))
def test_override_changes_exactly_what_it_names_property(tmp_path_factory, target, field, value):
    name, region = target
    if field in ("rpm", "tpm"):
        body = {"rate_limits": {field: value}}
    elif field == "max_output":
        body = {"limits": {field: value}}
    elif len(CATALOGUE.resolve(name).offer(region).tiers) == 1:
        body = {"price": {"input": value}}  # merges into the flat price, output kept
    else:
        tiers = [dict(above=t.above, upto=t.upto, input=str(t.input) if t.input else None)
                 for t in CATALOGUE.resolve(name).offer(region).tiers]
        tiers[0]["input"] = value
        body = {"tiers": [{k: v for k, v in t.items() if v is not None} for t in tiers]}
    path = tmp_path_factory.mktemp("ovr") / "o.yaml"
    path.write_text(yaml.safe_dump({"models": {name: {"regions": {region: body}}}}))
    try:
        mine = Catalogue.load(overrides=[path])
    except qm.CatalogueError as exc:
        # Only a value that breaks an invariant may be refused, e.g. max_output < 0 never
        # happens here, but tiers ending below max_input do after a tier table is replaced.
        assert (field == "input" and "tiers" in str(exc)) or field == "max_output"
        return
    before, after = CATALOGUE.resolve(name).offer(region), mine.resolve(name).offer(region)
    if field in ("rpm", "tpm"):
        assert getattr(after.rate_limits, field) == value
        assert after.limits == before.limits and after.tiers == before.tiers
    elif field == "max_output":
        assert after.limits.max_output == value
        assert after.tiers == before.tiers and after.rate_limits == before.rate_limits
    else:
        assert after.tiers[0].input == value
        assert after.limits == before.limits and after.rate_limits == before.rate_limits
        if len(before.tiers) == 1:
            assert after.tiers[0].output == before.tiers[0].output
    for other in CATALOGUE:
        if other.name != name:
            assert mine.resolve(other.name).offers == other.offers


# --- issue #12: the December 2026 catalogue ---------------------------------------------------

DATED = __import__("re").compile(r".*-(20[0-9]{2}-[0-9]{2}-[0-9]{2}|[0-9]{4})$")


def test_every_offer_has_a_source_kind_and_an_effective_date():
    for spec, offer in OFFERS:
        assert offer.source.kind in ("official", "catalogue", "third-party"), spec.name
        assert offer.effective is not None, spec.name
        assert dt.date(2023, 1, 1) <= offer.effective_date <= dt.date(2026, 12, 31), spec.name


def test_snapshots_get_no_batch_and_no_borrowed_rate_limits():
    for spec in CATALOGUE:
        if not DATED.fullmatch(spec.name) or spec.name in ("qwen-max-1201",):
            continue
        for offers in spec.offers.values():
            assert offers[0].batch is None, spec.name
    for spec in CATALOGUE:
        if spec.snapshot:
            snap = CATALOGUE.resolve(spec.snapshot)
            assert snap.name == spec.snapshot
            for region, offers in snap.offers.items():
                assert offers[0].batch is None, (snap.name, region)
                if offers[0].rate_limits and spec.offers.get(region):
                    assert offers[0].rate_limits is not spec.offers[region][0].rate_limits


def test_every_offer_bills_in_its_regions_currency_and_third_party_figures_say_so():
    for spec, offer in OFFERS:
        assert offer.currency == CATALOGUE.regions[offer.region]["currency"], spec.name
        if offer.source.kind == "third-party" and offer.tiers:
            assert offer.note or offer.source.note, spec.name


def test_bundled_catalogue_matches_the_published_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "data"
    schema = json.loads((data / "models.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)

    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x.isoformat() if isinstance(x, dt.date) else x

    doc = plain(yaml.safe_load((data / "models.yaml").read_text(encoding="utf-8")))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors[:5]]
    # and the schema rejects what the loader rejects
    bad = dict(doc, models={"m": {"family": "qwen3", "template": "qwen3",
                                  "regions": {"cn": {"source": "ML26",
                                                     "effective": "2026-02-30x"}}}})
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize(("name", "region", "rpm", "tpm"), [
    # RLEN2 gives qvq-max, -latest and -2025-03-25 one row in Singapore
    ("qvq-max-latest", "intl", 60, 100_000),
    ("qvq-max-2025-03-25", "intl", 60, 100_000),
    # OMNI lists the January snapshot in the qwen-omni-turbo row (Beijing)
    ("qwen-omni-turbo-2025-01-19", "cn", None, None),
    ("qwen-omni-turbo-0119", "cn", None, None),
    # ML26 names it in Beijing; OAI25 (seed 002) lists the open models the endpoint serves
    ("qwen3.5-omni-plus-2026-03-15", "cn", None, None),
    ("qwen1.5-72b-chat", "cn", None, None),
    ("qwen2-7b-instruct", "cn", None, None),
])
def test_names_the_sources_list_are_offered_where_they_list_them(name, region, rpm, tpm):
    spec = CATALOGUE.resolve(name)
    assert spec.matched_rule is None, name
    offer = spec.offer(region)  # NotOffered before
    if rpm is not None:
        assert (offer.rate_limits.rpm, offer.rate_limits.tpm) == (rpm, tpm)
    c = qm.cost(qm.Usage(1000, 100), name, region=region)
    assert c.amount is not None or c.unpriced, name  # priced, or unpriced with a reason


def test_the_january_omni_snapshot_costs_what_omni_prints():
    # per 1K: text in 0.0004, image 0.0015, text out after media input 0.0045 (CNY)
    c = qm.cost(qm.Usage(2000, 1000, image_tokens=1000), "qwen-omni-turbo-0119", region="cn")
    assert c.amount == Decimal("0.0004") + Decimal("0.0015") + Decimal("0.0045")
    assert c.currency == "CNY"


def test_qwq_plus_intl_context_is_the_window_not_input_plus_output():
    limits = CATALOGUE.resolve("qwq-plus").offer("intl").limits
    assert (limits.context, limits.max_input, limits.max_output) == (131_072, 98_304, 8_192)
    assert "98,304 + 8,192" in CATALOGUE.resolve("qwq-plus").offer("intl").note
