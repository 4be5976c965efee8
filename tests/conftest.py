from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("default", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=120,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if "CI" in __import__("os").environ else "default")

ORACLES = Path(__file__).parent / "oracle_templates"

#: (oracle template, a model whose family and profile should reproduce it exactly)
ORACLE_MODELS = {
    "qwen2.5": "qwen2.5-7b-instruct",
    "qwen3": "qwen3-8b",
    "qwen3.5": "qwen3.5-27b",
}


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory):
    """A function (template name) -> a local HF tokenizer folder with that official template."""
    pytest.importorskip("transformers")
    import hf_tokenizer

    from qwen_meter import resolve
    from qwen_meter.tokens.families import get_family

    built: dict[str, Path] = {}

    def make(template: str) -> Path:
        if template not in built:
            family = get_family(resolve(ORACLE_MODELS[template]).family)
            folder = tmp_path_factory.mktemp(f"hf-{template}")
            built[template] = hf_tokenizer.build(
                family, folder, (ORACLES / f"{template}.jinja").read_text(encoding="utf-8"))
        return built[template]

    return make
