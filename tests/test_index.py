"""The small name index answers exactly as the catalogue does, and rebuilds when it must."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import qwen_meter as qm
from qwen_meter.billing import index


def _fields(spec):
    return (spec.name, spec.family, spec.template, spec.thinking_default, spec.vision)


def test_index_agrees_with_the_catalogue_on_every_name():
    catalogue = qm.Catalogue.load()
    names = [n for spec in catalogue for n in (spec.name, *spec.aliases,
                                               *([spec.snapshot] if spec.snapshot else []))]
    names += ["Qwen-Plus", "dashscope/qwen-max", "qwen3-vl-plus-2026-05-01", "qwen3-14b",
              "qwen-vl-max-2025-08-13", "qwen2.5-72b-instruct", "qwen3.6-flash-2026-09-09"]
    for name in names:
        info = index.lookup(name)
        assert info is not None, name
        assert _fields(info) == _fields(catalogue.resolve(name)), name
    assert index.lookup("no-such-model") is None


def test_counting_does_not_load_the_catalogue_once_indexed(tmp_path):
    env = {**os.environ, "QWEN_METER_CACHE": str(tmp_path)}
    env.pop("QWEN_METER_CATALOGUE", None)
    probe = ("import sys, qwen_meter as q; q.count_messages([{'role': 'user', 'content': "
             "'hi'}], 'qwen-plus'); print('qwen_meter.catalogue' in sys.modules, "
             "'yaml' in sys.modules)")
    run = [sys.executable, "-c", probe]
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    first = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
    assert first.stdout.split() == ["True", "True"]  # built once from the catalogue
    assert len(list(tmp_path.glob("index-*.json"))) == 1
    second = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
    assert second.stdout.split() == ["False", "False"]


def test_an_unwritable_cache_still_counts(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("QWEN_METER_CACHE", str(blocker / "sub"))
    doc = index._read_or_build()
    assert "qwen-plus" in doc["models"]


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_METER_CACHE", str(tmp_path))
    path = tmp_path / f"index-{index._digest()}.json"
    path.write_text("{not json")
    doc = index._read_or_build()
    assert doc["models"]["qwen-plus"]["family"] == qm.resolve("qwen-plus").family
    assert json.loads(path.read_text())["version"] == doc["version"]


def test_unknown_models_still_get_suggestions():
    try:
        qm.count_tokens("x", "qwen-plsu")
    except qm.UnknownModel as exc:
        assert "did you mean" in str(exc)
    else:
        raise AssertionError("expected UnknownModel")
