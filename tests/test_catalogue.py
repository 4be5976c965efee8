"""Model names resolve to a tokenizer family and a template profile."""

from __future__ import annotations

import pytest

import qwen_meter as qm
from qwen_meter.catalogue.core import Catalogue


@pytest.mark.parametrize(("name", "family", "template"), [
    ("qwen-plus", "qwen3", "dashscope-qwen3"),
    ("QWEN-PLUS", "qwen3", "dashscope-qwen3"),
    ("dashscope/qwen-plus", "qwen3", "dashscope-qwen3"),
    ("qwen-plus-0919", "qwen2.5", "dashscope-qwen2.5"),
    ("qwen-turbo", "qwen3", "dashscope-qwen3-hybrid"),
    ("qwen3.6-plus", "qwen3.5", "dashscope-qwen3.5"),
    ("qwen3.6-plus-2026-04-02", "qwen3.5", "dashscope-qwen3.5"),
    ("qwen3-235b-a22b-instruct-2507", "qwen3", "qwen3-instruct-2507"),
    ("qwen3-32b", "qwen3", "qwen3"),
    ("qwen-max-2025-03-01", "qwen2.5", "dashscope-qwen2.5"),
])
def test_resolve(name, family, template):
    spec = qm.resolve(name)
    assert (spec.family, spec.template) == (family, template)


def test_unknown_model_suggests_close_names():
    with pytest.raises(qm.UnknownModel) as info:
        qm.resolve("qwen-plsu")
    assert "qwen-plus" in info.value.suggestions
    with pytest.raises(qm.UnknownModel):
        qm.count_tokens("x", "gpt-4o")


@pytest.mark.parametrize(("text", "field"), [
    ("models: [1, 2", None),
    ("models:\n  m: {family: qwen9, template: qwen3}\n", "family"),
    ("models:\n  m: {family: qwen3, template: nope}\n", "template"),
    ("models:\n  m: {family: qwen3}\n", "template"),
    ("models:\n  m: {family: qwen3, template: qwen3, vision: {patch: -1}}\n", "vision.patch"),
    ("models: {}\nname_rules:\n  - {match: '(', family: qwen3, template: qwen3}\n",
     "name_rules[0].match"),
])
def test_malformed_catalogue_names_file_model_and_field(tmp_path, text, field):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(qm.CatalogueError) as info:
        Catalogue.from_file(path)
    assert str(path) in str(info.value)
    assert info.value.field == field


BASE = """sources:
  S: {url: "https://example.com/p", as_of: 2026-01-01, effective: 2026-01-01}
models:
  m:
    family: qwen3
    template: qwen3
    regions:
      cn:
"""


@pytest.mark.parametrize(("offer", "field"), [
    ("        source: S\n        effective: 2026-02-30\n", "regions.cn.effective"),
    ("        source: S\n        effective: '26-1-1'\n", "regions.cn.effective"),
    ("        source: S\n        note: [1]\n", "regions.cn.note"),
    ("        source: S\n        price: {input: '1e'}\n", "regions.cn.price.input"),
    ("        source: S\n        price: {input: true}\n", "regions.cn.price.input"),
    ("        source: S\n        rate_limits: {rps: 1.5}\n", "regions.cn.rate_limits.rps"),
    ("        source: S\n        batch_chat: 2\n", "regions.cn.batch_chat"),
    ("        source: S\n        tool_fees: {search: {per_call: -1}}\n",
     "regions.cn.tool_fees.search.per_call"),
    ("        source: S\n        tool_fees: {search: {}}\n",
     "regions.cn.tool_fees.search.per_call"),
    ("        source: S\n        tiers: [{above: 0, upto: 10, input: 1}, {above: 20, input: 2}]\n",
     "regions.cn.tiers[1].above"),
])
def test_wrong_types_anywhere_name_the_model_and_field(tmp_path, offer, field):
    path = tmp_path / "models.yaml"
    path.write_text(BASE + offer, encoding="utf-8")
    with pytest.raises(qm.CatalogueError) as info:
        Catalogue.from_file(path)
    assert (info.value.file, info.value.model, info.value.field) == (str(path), "m", field)


def test_an_offer_priced_in_another_currency_than_its_region_is_refused(tmp_path):
    # ML26 prints Singapore prices in CNY; copied into an intl offer they were billed as USD.
    path = tmp_path / "models.yaml"
    path.write_text(BASE.replace("      cn:\n", "      intl:\n")
                    + "        source: S\n        currency: CNY\n        price: {input: 1}\n",
                    encoding="utf-8")
    with pytest.raises(qm.CatalogueError, match="bills in USD") as info:
        Catalogue.from_file(path)
    assert (info.value.file, info.value.model, info.value.field) == (
        str(path), "m", "regions.intl.currency")
    override = tmp_path / "override.yaml"
    override.write_text("models:\n  qwen-plus:\n    regions:\n      intl:\n"
                        "        currency: CNY\n", encoding="utf-8")
    with pytest.raises(qm.CatalogueError) as info:
        Catalogue.load(overrides=[override])
    assert (info.value.model, info.value.field) == ("qwen-plus", "regions.intl.currency")
    # the region's own currency, written out, is fine
    path.write_text(BASE + "        source: S\n        currency: CNY\n", encoding="utf-8")
    assert Catalogue.from_file(path).resolve("m").offer("cn").currency == "CNY"


@pytest.mark.parametrize(("text", "field"), [
    (BASE.replace("effective: 2026-01-01", "kind: rumour") + "        source: S\n",
     "sources.S.kind"),
    (BASE.replace(", effective: 2026-01-01", "") + "        source: S\n", "regions.cn.effective"),
    ("defaults:\n  regions:\n    cn: {currency: CNY}\n" + BASE + "        source: S\n",
     "defaults.regions.cn.base_url"),
    ("defaults:\n  regions:\n    cn: {currency: CNY, base_url: 'ftp://x'}\n" + BASE
     + "        source: S\n", "defaults.regions.cn.base_url"),
    ("name_rules: {a: 1}\n" + BASE + "        source: S\n", "name_rules"),
])
def test_bad_tables_name_their_field(tmp_path, text, field):
    path = tmp_path / "models.yaml"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(qm.CatalogueError) as info:
        Catalogue.from_file(path)
    assert info.value.field == field


def test_non_utf8_file(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_bytes((BASE + "        source: S\n        note: 'caf\xe9'\n").encode("latin-1"))
    with pytest.raises(qm.CatalogueError, match="UTF-8") as info:
        Catalogue.from_file(path)
    assert info.value.file == str(path)


def test_region_for_url_on_a_custom_table(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("defaults:\n  regions:\n    xx: {currency: USD, base_url: "
                    "'https://llm.example.com/compatible-mode/v1'}\n" + BASE.replace("cn:", "xx:")
                    + "        source: S\n", encoding="utf-8")
    cat = Catalogue.from_file(path)
    assert cat.region_for_url("https://llm.example.com/api/v1") == "xx"
    assert cat.region_for_url("https://dashscope.aliyuncs.com/compatible-mode/v1") is None
