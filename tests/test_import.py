"""`import qwen_meter` stays light."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_heavy_modules():
    code = ("import sys, qwen_meter; "
            "print(','.join(m for m in ('pandas', 'transformers', 'torch', 'PIL', 'tiktoken', "
            "'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_public_api_is_typed_and_exported():
    import qwen_meter

    for name in qwen_meter.__all__:
        assert hasattr(qwen_meter, name), name
    from importlib import resources

    assert resources.files("qwen_meter").joinpath("py.typed").is_file()
