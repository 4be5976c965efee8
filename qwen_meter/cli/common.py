"""What the commands share: reading text and JSON requests (a file or stdin), number and
table formatting, and the region choices."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..base.errors import InputDecodeError, InvalidMessages, QwenMeterError

#: Deployment regions of the bundled catalogue (cn = Beijing, intl = Singapore, ...).
REGIONS = ("cn", "intl", "global", "us", "eu")


def _read_text(path: str) -> str:
    raw = sys.stdin.buffer.read() if path == "-" else _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "stdin" if path == "-" else path
        raise InputDecodeError(f"{where} is not valid UTF-8 (byte {exc.start})") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise QwenMeterError(f"cannot read {path}: {exc.strerror}") from None


def _load_request(path: str) -> dict[str, Any]:
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidMessages(f"{path} is not JSON: {exc}") from None
    if isinstance(doc, (list, dict)):
        from ..billing.request import normalize_request  # OpenAI or native DashScope bodies

        return normalize_request(doc)
    raise InvalidMessages(f"{path} must hold a list of messages or a request object")


def _request_and_model(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    request = _load_request(args.request)
    model = args.model or request.get("model")
    if not model:
        raise InvalidMessages("name the model with --model or a 'model' key in the request")
    return request, str(model)


def _money(value: Any) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)
