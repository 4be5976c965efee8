"""Estimate a Batch API input file before uploading it.

A Batch file is JSON Lines in the OpenAI batch format, one request per line::

    {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "qwen-plus", "messages": [...], "max_tokens": 100}}

Lines that are bare request bodies (what the synchronous Batch Chat API takes) are accepted
too. Each request is counted and priced at the batch price; a line that cannot be read is
reported with its line number and the rest of the file is still estimated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..base.errors import QwenMeterError
from ..catalogue.core import Catalogue, default_catalogue

#: Endpoints of a batch line that are chat requests.
CHAT_URLS = ("/v1/chat/completions", "/compatible-mode/v1/chat/completions")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchLineError:
    """A line of the file that could not be estimated."""

    line: int
    error: str
    custom_id: str | None = None


@dataclass
class ModelBatchEstimate:
    """The requests of one model in a batch file and what they may cost."""

    model: str
    region: str
    currency: str
    requests: int = 0
    prompt_tokens: int = 0
    max_output_tokens: int = 0
    exact_prompt: bool = True
    low: Decimal | None = Decimal(0)
    high: Decimal | None = Decimal(0)
    unpriced: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts as strings)."""
        def money(value: Decimal | None) -> str | None:
            return None if value is None else f"{value.normalize():f}"

        return {"model": self.model, "region": self.region, "currency": self.currency,
                "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "max_output_tokens": self.max_output_tokens,
                "exact_prompt": self.exact_prompt, "low": money(self.low),
                "high": money(self.high), "unpriced": self.unpriced}


@dataclass
class BatchEstimate:
    """Per-model totals of a batch file, and the lines that could not be estimated."""

    models: dict[str, ModelBatchEstimate] = field(default_factory=dict)
    errors: list[BatchLineError] = field(default_factory=list)
    lines: int = 0

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.models.values())

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "requests": self.requests,
                "models": [m.as_dict() for m in self.models.values()],
                "errors": [{"line": e.line, "custom_id": e.custom_id, "error": e.error}
                           for e in self.errors]}


def _add(total: Decimal | None, amount: Decimal | None) -> Decimal | None:
    return None if total is None or amount is None else total + amount


def _body(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise QwenMeterError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise QwenMeterError(f"expected an object, got {type(doc).__name__}")
    custom_id = doc.get("custom_id")
    custom_id = str(custom_id) if custom_id is not None else None
    if "body" not in doc:
        return doc, custom_id  # a bare Batch Chat API body
    url = doc.get("url", CHAT_URLS[0])
    if url not in CHAT_URLS:
        raise QwenMeterError(f"only chat requests are estimated, not {url!r}")
    body = doc["body"]
    if not isinstance(body, dict):
        raise QwenMeterError("'body' must be an object")
    return body, custom_id


def _lines(source: str | os.PathLike[str] | Iterable[str]) -> tuple[Iterator[str], int]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise QwenMeterError(f"{path} is not valid UTF-8 (byte {exc.start})") from None
        except OSError as exc:
            raise QwenMeterError(f"cannot read {path}: {exc.strerror}") from None
        lines = text.splitlines()
        return iter(lines), len(lines)
    items = list(source)
    return iter(items), len(items)


def estimate_batch(source: str | os.PathLike[str] | Iterable[str], *,
                   model: str | None = None, region: str | None = None,
                   catalogue: Catalogue | None = None,
                   progress: Progress | None = None) -> BatchEstimate:
    """Requests, prompt tokens and the low..high batch-price cost of a Batch input file,
    per model.

    ``source`` is a path or an iterable of lines. ``model`` names the model for lines whose
    body has none. ``progress(done, total)`` is called after each line. Lines that fail
    (not JSON, no messages, unknown model, invalid messages ...) are listed in ``errors``
    with their 1-based line numbers.
    """
    from .pricing import estimate_cost

    cat = catalogue or default_catalogue()
    lines, total = _lines(source)
    result = BatchEstimate()
    for number, line in enumerate(lines, start=1):
        result.lines = number
        if line.strip():
            custom_id = None
            try:
                body, custom_id = _body(line)
                name = body.get("model") or model
                if not isinstance(name, str) or not name:
                    raise QwenMeterError("no model (give one in the body or with --model)")
                spec = cat.resolve(name)
                estimate = estimate_cost(body, spec, region=region, batch=True)
            except QwenMeterError as exc:
                result.errors.append(BatchLineError(number, str(exc), custom_id))
            else:
                row = result.models.get(spec.name)
                if row is None:
                    row = result.models[spec.name] = ModelBatchEstimate(
                        spec.name, estimate.low.region, estimate.currency)
                row.requests += 1
                row.prompt_tokens += estimate.prompt_tokens
                row.max_output_tokens += estimate.max_output_tokens or 0
                row.exact_prompt = row.exact_prompt and estimate.exact_prompt
                row.low = _add(row.low, estimate.low.amount)
                row.high = _add(row.high, estimate.high.amount)
                if not row.unpriced:
                    row.unpriced = estimate.low.unpriced or estimate.high.unpriced
        if progress is not None:
            progress(number, total)
    return result
