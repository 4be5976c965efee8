"""``qwen-meter count``: tokens of text, a file, stdin or a JSON chat request."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from ..base.data import data_dir
from ..base.errors import InvalidMessages
from .common import _load_request, _read_text

EXAMPLE = "examples/chat.json"


def _print_count(result: Any, args: argparse.Namespace, label: str) -> None:
    if args.json:
        print(json.dumps({"input": label, **result.as_dict()}, ensure_ascii=False))
        return
    exact = "exact" if result.exact else "estimate"
    unit = "token" if result.tokens == 1 else "tokens"
    line = f"{result.tokens} {unit} ({exact}; {result.backend}, family {result.family}"
    if result.template:
        line += f", template {result.template}"
    print(line + f") — {label}")
    media = {k: getattr(result, f"{k}_tokens") for k in ("image", "audio", "video")}
    if any(media.values()):
        parts = ", ".join(f"{k} {v}" for k, v in media.items() if v)
        print(f"  text {result.text_tokens}, {parts}")
    for note in result.notes:
        print(f"  note: {note}")


def _unlisted(model: str, args: argparse.Namespace) -> tuple[str, dict[str, Any], str | None]:
    """How to count for ``model``: (name to count as, options, note). A model the catalogue
    does not list (deepseek-v3.2, a new snapshot) is counted as the meter counts its calls —
    by the catalogue's name rule, else the heuristic estimate — and the count says so; a name
    close to a listed one is taken for a typo and refused with the suggestions."""
    from ..base.errors import UnknownModel
    from ..billing.unlisted import resolve
    from ..catalogue.core import resolve as catalogue_resolve

    options: dict[str, Any] = {"tokenizer": args.tokenizer, "backend": args.backend}
    if args.tokenizer is not None:  # the user's own tokenizer: count with it as asked
        return model, options, None
    try:
        catalogue_resolve(model)
    except UnknownModel as exc:
        if exc.suggestions:  # close to a listed name (qwen-plsu): a typo, say so
            raise
    resolved = resolve(model, None)
    if resolved.listed:
        return model, options, None
    options["backend"] = args.backend or resolved.backend
    return resolved.count_as, options, resolved.note


def _marked(result: Any, note: str | None) -> Any:
    if note is None:
        return result
    return replace(result, exact=False, notes=(*result.notes, note))


def _count(args: argparse.Namespace) -> int:
    from ..billing.chat_counting import count_messages
    from ..billing.counting import count_tokens
    from ..billing.model_setup import DEFAULT_MODEL

    request_file = str(data_dir() / EXAMPLE) if args.example else args.messages
    if request_file is not None:
        request = _load_request(request_file)
        model = str(args.model or request.get("model") or DEFAULT_MODEL)
        count_as, options, note = _unlisted(model, args)
        thinking = args.enable_thinking if args.enable_thinking is not None \
            else request.get("enable_thinking")
        result = count_messages({**request, "model": count_as}, count_as,
                                enable_thinking=thinking, template=args.template,
                                high_resolution=bool(request.get("vl_high_resolution_images")),
                                **options)
        label = "bundled example" if args.example else request_file
        _print_count(_marked(result, note), args, f"{label}, model {model}")
        return 0
    if args.template is not None:
        raise InvalidMessages("--template applies to chat requests (-m FILE or --example); "
                              "plain text is counted without a template")
    if args.file is not None:
        text, label = _read_text(args.file), "stdin" if args.file == "-" else args.file
    elif args.text is not None:
        text, label = args.text, "text"
    else:
        text, label = _read_text("-"), "stdin"
    model = args.model or DEFAULT_MODEL
    count_as, options, note = _unlisted(model, args)
    result = count_tokens(text, count_as, **options)
    _print_count(_marked(result, note), args, f"{label}, model {model}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``count`` command to the CLI's subparsers."""
    count = subparsers.add_parser(
        "count", help="count the tokens of text or of a chat request",
        description="Count tokens of a string, a file, stdin, or a JSON chat request (messages, "
                    "tools, enable_thinking).")
    source = count.add_mutually_exclusive_group()
    source.add_argument("text", nargs="?", help="text to count (default: read stdin)")
    source.add_argument("-f", "--file", help="count a UTF-8 text file ('-' for stdin)")
    source.add_argument("-m", "--messages", metavar="JSON",
                        help="count a chat request: a JSON list of messages, or an object "
                             "with messages / tools / enable_thinking / model")
    source.add_argument("--example", action="store_true",
                        help="count the bundled example chat request (qwen-plus)")
    count.add_argument("--model", help="model name (default: qwen-plus, or the request's)")
    count.add_argument("--template", help="override the chat-template profile")
    count.add_argument("--tokenizer", metavar="PATH",
                       help="a local Hugging Face tokenizer folder (transformers backend)")
    count.add_argument("--backend", choices=("tiktoken", "transformers", "heuristic"),
                       help="tokenizer backend (default: tiktoken, or transformers with "
                            "--tokenizer)")
    thinking = count.add_mutually_exclusive_group()
    thinking.add_argument("--thinking", dest="enable_thinking", action="store_const",
                          const=True, help="count with enable_thinking=true")
    thinking.add_argument("--no-thinking", dest="enable_thinking", action="store_const",
                          const=False, help="count with enable_thinking=false")
    count.add_argument("--json", action="store_true", help="print one JSON object")
    count.set_defaults(run=_count)
