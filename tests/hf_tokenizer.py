"""Build a Hugging Face tokenizer folder from a Qwen BPE rank file, offline.

The folder has the layout of the official Qwen tokenizers (byte-level BPE with NFC, Qwen's
split pattern, the family's added tokens) and a chat template of our choosing, so the
transformers backend can be tested without downloading anything.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from qwen_meter.tokens.backends import _load_ranks, bundled_ranks_path
from qwen_meter.tokens.families import TokenizerFamily


@cache
def _byte_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte -> printable character map, which byte-level BPE vocabularies use.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge list equivalent to ``ranks``: for each multi-byte token, the last merge that
    BPE (restricted to lower ranks) performs to build it."""
    out = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_at = None, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best):
                    best, best_at = r, i
            if best is None:
                break
            parts[best_at:best_at + 2] = [parts[best_at] + parts[best_at + 1]]
        if len(parts) == 2:
            out.append((parts[0], parts[1]))
    return out


def build(family: TokenizerFamily, folder: Path, chat_template: str) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` for ``family`` into ``folder``."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.exists():
        ranks = _load_ranks(str(bundled_ranks_path(family)))
        b2u = _byte_to_unicode()

        def text(b: bytes) -> str:
            return "".join(b2u[x] for x in b)

        vocab = {text(tok): rank for tok, rank in ranks.items()}
        merges = [(text(a), text(b)) for a, b in _merges(ranks)]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(family.pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                     use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
        tok.add_tokens([
            AddedToken(t, special=t in specials, normalized=False)
            for t, _ in sorted(family.added_tokens.items(), key=lambda kv: kv[1])
        ])
        tok.save(str(tokenizer_file))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000,
        "chat_template": chat_template,
    }), encoding="utf-8")
    return folder
