"""The integrations cost nothing unless used: `import qwen_meter` loads none of them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("opentelemetry", "prometheus_client", "langchain_core", "langchain_community",
         "litellm", "qwen_meter.integrations")


def loaded_after(code: str) -> set[str]:
    probe = (f"import sys\n{code}\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    return set(out.split(",")) - {""}


def test_import_and_a_meter_load_no_integration():
    assert loaded_after("import qwen_meter as qm; qm.Meter(log=None); qm.Observer") == set()


def test_price_map_export_does_not_import_litellm():
    loaded = loaded_after("from qwen_meter.integrations.litellm import price_map; price_map()")
    assert "litellm" not in loaded


def test_each_integration_loads_only_its_library():
    assert loaded_after("import qwen_meter.integrations.usage_logging") == {
        "qwen_meter.integrations"}
    assert "prometheus_client" not in loaded_after("import qwen_meter.integrations.otel")
    assert "opentelemetry" not in loaded_after("import qwen_meter.integrations.prometheus")
    handler_only = loaded_after("from qwen_meter.integrations.langchain import "
                                "QwenMeterCallbackHandler")
    assert "langchain_community" not in handler_only and "litellm" not in handler_only


def test_missing_library_names_the_extra():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import qwen_meter as qm\n"
            "try:\n    qm.PrometheusObserver\nexcept qm.MissingExtra as exc:\n"
            "    print('pip install \".[prometheus]\"' in str(exc), isinstance(exc, ImportError))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:2] == ["True", "True"]
