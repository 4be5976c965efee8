"""Model names resolve to a tokenizer family and a template profile."""

from __future__ import annotations

import pytest

import qwen_meter as qm
from qwen_meter.catalogue import Catalogue


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
