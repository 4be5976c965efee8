"""Malformed input through the public API: every case must raise a qwen_meter error.

Each case is a zero-argument call; it runs under a 5 s guard (a hang fails the case, it does
not hang the suite). A case passes only if it raises a :class:`QwenMeterError` — nothing
accepted silently, no accidental exception from deep inside. Where a Python user expects a
built-in flavour (``TypeError`` for a wrong type, ``ValueError`` for a wrong value), the case
says so and the error must be that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.base.errors import (
    CatalogueError,
    InvalidArgument,
    InvalidArgumentType,
    QwenMeterError,
)
from qwen_meter.catalogue.core import Catalogue
from qwen_meter.meter.log import JsonlLog, TornLineWarning, read_jsonl

GUARD_SECONDS = 5.0
OK = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """Pay the one-off costs (the catalogue, the transformers import behind a tokenizer
    path) before the guard starts timing: the guard catches hangs, not a cold start on a
    loaded machine."""
    qm.count_tokens("warm")
    with contextlib.suppress(ImportError):
        import transformers  # noqa: F401


def guarded(fn: Callable[[], Any], limit: float = GUARD_SECONDS) -> dict[str, Any]:
    """Run ``fn`` in a thread; {'value': ...} or {'error': ...}; fails the test on a hang."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # the test inspects whatever it was
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        pytest.fail(f"hung for more than {limit} s")
    return outcome


def assert_typed(fn: Callable[[], Any], flavour: type[BaseException] | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = guarded(fn)
    assert "error" in outcome, f"accepted silently: {outcome.get('value')!r:.200}"
    error = outcome["error"]
    assert isinstance(error, QwenMeterError), f"{type(error).__name__}: {error}"
    assert str(error), "an error must say what was wrong"
    if flavour is not None:
        assert isinstance(error, flavour), f"{type(error).__name__} is not a {flavour.__name__}"


# --- the table ----------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[], Any], type[BaseException] | None]] = []


def case(name: str, fn: Callable[[], Any], flavour: type[BaseException] | None = None) -> None:
    CASES.append((name, fn, flavour))


class Opaque:
    """An object no API should know what to do with."""

    def __repr__(self) -> str:
        return "Opaque()"


# Values that are not a model name (None is "the default model" in counting, so not here).
BAD_MODELS: list[tuple[Any, type[BaseException] | None]] = [
    ("", ValueError), ("   ", ValueError), (5, TypeError), (1.5, TypeError), (True, TypeError),
    (["qwen-plus"], TypeError), ({"m": 1}, TypeError), (("qwen-plus",), TypeError),
    (b"qwen-plus", TypeError), (Opaque(), TypeError), ("no-such-model-zz", KeyError),
]
# Not a switch: truthy strings and numbers are refused, not read as True.
BAD_FLAGS: list[Any] = ["no", "yes", "false", "", 0, 1, 1.0, [], {}, b"1"]
BAD_NAMES: list[tuple[Any, type[BaseException] | None]] = [
    ("", ValueError), (5, TypeError), ([], TypeError), ({}, TypeError), (b"x", TypeError),
    (True, TypeError), ("nope", None),
]
BAD_PATHS: list[tuple[Any, type[BaseException] | None]] = [
    (5, TypeError), ([], TypeError), ("", ValueError), (b"/x", TypeError),
    ("/nonexistent/tokenizer", None), ("a\x00b", ValueError),
]
BAD_TEMPLATES: list[tuple[Any, type[BaseException] | None]] = [
    (5, TypeError), ([], TypeError), ("", ValueError), ("nope", None), (Opaque(), TypeError),
]


def _tool_call(arguments: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "go"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "1", "type": "function",
                             "function": {"name": "f", "arguments": arguments}}]}]


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


BAD_MESSAGES: list[Any] = [
    None, 5, "hi", b"hi", {"role": "user", "content": "x"}, [], [None], [5], ["hi"], [{}],
    [{"role": "user"}], [{"role": "bogus", "content": "x"}], [{"role": 5, "content": "x"}],
    [{"role": "user", "content": 5}], [{"role": "user", "content": {"a": 1}}],
    [{"role": "user", "content": [5]}], [{"role": "user", "content": [{"type": "bogus"}]}],
    [{"role": "user", "content": [{"type": "text"}]}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}],
    [{"role": "system", "content": [{"type": "image_url",
                                     "image_url": {"url": "http://x/a.png"}}]}],
    [{"role": "assistant", "content": None, "tool_calls": "x"}],
    [{"role": "assistant", "content": None, "tool_calls": [5]}],
    [{"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}],
    [{"role": "assistant", "content": "x", "reasoning_content": 5}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}],
    [{"role": "user", "content": [{"type": "image_url",
                                   "image_url": {"url": "data:image/png;base64,!!!!"}}]}],
    _tool_call({"a": {1, 2}}), _tool_call({"a": b"x"}), _tool_call({"a": dt.datetime(2024, 1, 1)}),
    _tool_call({("a",): 1}), _tool_call({"a": math.nan}), _tool_call(_cyclic()), _tool_call(5),
    _tool_call([1, 2]),
]
BAD_TOOLS: list[Any] = [
    "x", 5, {"a": 1}, [5], ["x"], [None],
    [{"type": "function", "function": {"name": "f", "parameters": {"a": {1}}}}],
    [{"type": "function", "function": {"name": "f", "parameters": {"a": b"x"}}}],
    [{"type": "function", "function": {"name": "f", "parameters": {"a": dt.date(2024, 1, 1)}}}],
    [{"type": "function", "function": {"name": "f", "parameters": {(1, 2): 1}}}],
    [{"type": "function", "function": {"name": "f", "parameters": _cyclic()}}],
]
BAD_REPLIES: list[Any] = [5, 1.5, [1], {"content": 5}, {"content": None, "tool_calls": "x"},
                          Opaque(), b"x", {"reasoning_content": 5}, True,
                          {"content": None, "tool_calls": [{"function": {"name": "f",
                                                                         "arguments": {1}}}]}]

# --- counting -----------------------------------------------------------------------------

COUNTING: dict[str, Callable[..., Any]] = {
    "count_tokens": lambda **kw: qm.count_tokens("hello", **kw),
    "encode": lambda **kw: qm.encode("hello", **kw),
    "decode": lambda **kw: qm.decode([1, 2], **kw),
    "get_tokenizer": lambda **kw: qm.get_tokenizer(**kw),
    "count_messages": lambda **kw: qm.count_messages(OK, **kw),
    "count_completion": lambda **kw: qm.count_completion("ok", **kw),
}
for fname, call in COUNTING.items():
    for value, flavour in BAD_MODELS:
        case(f"{fname}(model={value!r})", lambda c=call, v=value: c(model=v), flavour)
    for arg in ("family", "backend"):
        for value, flavour in BAD_NAMES:
            case(f"{fname}({arg}={value!r})", lambda c=call, a=arg, v=value: c(**{a: v}), flavour)
    for value, flavour in BAD_PATHS:
        case(f"{fname}(tokenizer={value!r})", lambda c=call, v=value: c(tokenizer=v), flavour)
for fname in ("count_messages", "count_completion"):
    for value, flavour in BAD_TEMPLATES:
        case(f"{fname}(template={value!r})",
             lambda c=COUNTING[fname], v=value: c(template=v), flavour)
for fname in ("count_messages", "count_completion", "render_messages"):
    for value in BAD_FLAGS:
        fn = {"count_messages": qm.count_messages, "render_messages": qm.render_messages}.get(fname)
        if fn is None:
            case(f"count_completion(enable_thinking={value!r})",
                 lambda v=value: qm.count_completion("ok", enable_thinking=v), TypeError)
        else:
            case(f"{fname}(enable_thinking={value!r})",
                 lambda f=fn, v=value: f(OK, enable_thinking=v), TypeError)
for value in BAD_FLAGS[:5]:
    case(f"count_messages(high_resolution={value!r})",
         lambda v=value: qm.count_messages(OK, high_resolution=v), TypeError)
    case(f"count_messages(add_generation_prompt={value!r})",
         lambda v=value: qm.count_messages(OK, add_generation_prompt=v), TypeError)
for n, value in enumerate(BAD_MESSAGES):
    case(f"count_messages(messages#{n})", lambda v=value: qm.count_messages(v), ValueError)
for n, value in enumerate(BAD_MESSAGES[:24]):  # the rest are media, measured only by counts
    case(f"render_messages(messages#{n})", lambda v=value: qm.render_messages(v), ValueError)
for n, value in enumerate(BAD_TOOLS):
    case(f"count_messages(tools#{n})", lambda v=value: qm.count_messages(OK, tools=v), ValueError)
for n, value in enumerate(BAD_REPLIES):
    case(f"count_completion(reply#{n})", lambda v=value: qm.count_completion(v))
for value in (5, None, [1], b"x", Opaque()):
    case(f"count_tokens(text={value!r})", lambda v=value: qm.count_tokens(v), TypeError)
    case(f"encode(text={value!r})", lambda v=value: qm.encode(v), TypeError)
for value in ("abc", 5, None, [1.5], ["1"], [-1], [10**30], [True], {1: 2}):
    case(f"decode(ids={value!r})", lambda v=value: qm.decode(v))
case("count_completion(reasoning=5)", lambda: qm.count_completion("ok", reasoning=5), TypeError)

# --- pricing and pre-flight ----------------------------------------------------------------

BAD_USAGE: list[Any] = [
    "x", 5, None, [1], b"x", Opaque(), {"prompt_tokens": -1}, {"prompt_tokens": "1"},
    {"prompt_tokens": 1.5}, {"prompt_tokens": math.nan}, {"prompt_tokens": True},
    {"completion_tokens": -5}, {"prompt_tokens": math.inf}, {"total_tokens": "x"},
]
BAD_AT: list[tuple[Any, type[BaseException] | None]] = [
    ("x", ValueError), ("2024-13-01", ValueError), ("", ValueError), (5, TypeError),
    (1.5, TypeError), ([2024], TypeError), ({"y": 1}, TypeError), (True, TypeError),
    (b"2024-01-01", TypeError), ("yesterday", ValueError), ("2024-02-30", ValueError),
]
BAD_CATALOGUES: list[Any] = ["x", 5, {}, [], Opaque(), True]
BAD_REGIONS: list[tuple[Any, type[BaseException] | None]] = [
    ("", ValueError), (5, TypeError), ([], TypeError), ("mars", None), (b"cn", TypeError),
]
PRICING: dict[str, Callable[..., Any]] = {
    "cost": lambda **kw: qm.cost(USAGE, kw.pop("model", "qwen-plus"), **kw),
    "estimate_cost": lambda **kw: qm.estimate_cost(OK, kw.pop("model", "qwen-plus"), **kw),
    "check": lambda **kw: qm.check(OK, kw.pop("model", "qwen-plus"), **kw),
}
for fname, call in PRICING.items():
    for value, flavour in [*BAD_MODELS, (None, ValueError)]:
        case(f"{fname}(model={value!r})", lambda c=call, v=value: c(model=v), flavour)
    for value, flavour in BAD_AT:
        case(f"{fname}(at={value!r})", lambda c=call, v=value: c(at=v), flavour)
    for value in BAD_CATALOGUES:
        case(f"{fname}(catalogue={value!r})", lambda c=call, v=value: c(catalogue=v), TypeError)
    for value, flavour in BAD_REGIONS:
        case(f"{fname}(region={value!r})", lambda c=call, v=value: c(region=v), flavour)
for value in BAD_FLAGS:
    case(f"cost(thinking={value!r})", lambda v=value: qm.cost(USAGE, "qwen-plus", thinking=v),
         TypeError)
    case(f"cost(batch={value!r})", lambda v=value: qm.cost(USAGE, "qwen-plus", batch=v),
         TypeError)
    case(f"estimate_cost(batch={value!r})",
         lambda v=value: qm.estimate_cost(OK, "qwen-plus", batch=v), TypeError)
    case(f"estimate_cost(enable_thinking={value!r})",
         lambda v=value: qm.estimate_cost(OK, "qwen-plus", enable_thinking=v), TypeError)
    case(f"check(enable_thinking={value!r})",
         lambda v=value: qm.check(OK, "qwen-plus", enable_thinking=v), TypeError)
for n, value in enumerate(BAD_USAGE):
    case(f"cost(usage#{n})", lambda v=value: qm.cost(v, "qwen-plus"))
for value in (0, -1, "5", 1.5, True, math.nan, [], 10**9):
    if value != 10**9:  # an estimate prices any allowance; only check() knows it is too many
        case(f"estimate_cost(max_tokens={value!r})",
             lambda v=value: qm.estimate_cost(OK, "qwen-plus", max_tokens=v))
    case(f"check(max_tokens={value!r})", lambda v=value: qm.check(OK, "qwen-plus", max_tokens=v))
for n, value in enumerate(BAD_MESSAGES[:12]):
    case(f"check(request#{n})", lambda v=value: qm.check(v, "qwen-plus"))
    if not isinstance(value, (int, str)):  # a token count or a text is a valid subject
        case(f"estimate_cost(request#{n})", lambda v=value: qm.estimate_cost(v, "qwen-plus"))
for value in (-1, True, 1.5, b"x", Opaque()):
    case(f"estimate_cost(request={value!r})", lambda v=value: qm.estimate_cost(v, "qwen-plus"))
for value in ("abc", 5, None, [], {"role": "user"}, b"x"):
    case(f"fit_messages({value!r})", lambda v=value: qm.fit_messages(v, "qwen-plus"))
case("fit_messages(model='')", lambda: qm.fit_messages(OK, ""), ValueError)
case("fit_messages(enable_thinking='no')",
     lambda: qm.fit_messages(OK, "qwen-plus", enable_thinking="no"), TypeError)
case("check(prompt over the input limit)",
     lambda: qm.check([{"role": "user", "content": "x " * 40_000}], "qwen-max"))

# --- budgets -------------------------------------------------------------------------------

BUDGET_ARGS: dict[str, list[tuple[Any, type[BaseException] | None]]] = {
    "currency": [(5, TypeError), ("XYZ", ValueError), ("", ValueError), ([], TypeError)],
    "per": [("year", ValueError), (5, ValueError), ("", ValueError), (True, ValueError)],
    "scope": [(None, TypeError), ("", ValueError), (5, TypeError), ([], TypeError)],
    "name": [(None, TypeError), ("", ValueError), (5, TypeError)],
    "tz": [(5, TypeError), ("Mars/Base", ValueError), ("", ValueError), ([], TypeError),
           (None, TypeError), ("../../etc/passwd", ValueError)],
    "mode": [("x", ValueError), (None, ValueError), (5, ValueError), ("HARD", ValueError)],
    "thresholds": [(0.5, TypeError), ("0.5", TypeError), ([0], ValueError), ([-1], ValueError),
                   ([math.nan], ValueError), ([math.inf], ValueError), (["x"], TypeError),
                   ([True], TypeError), ([11], ValueError), (None, TypeError)],
    "on_threshold": [("x", TypeError), (5, TypeError)],
    "store": [(5, TypeError), ([], TypeError), ("ftp://x", ValueError), (Opaque(), TypeError),
              ("sqlite:///nonexistent-dir/a/b.db", None)],
    "lease": [(0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
              ("10", TypeError), (None, TypeError), (True, TypeError)],
    "on_store_error": [("x", ValueError), (None, ValueError), (True, ValueError)],
    "clock": [("x", TypeError), (5, TypeError)],
}
for arg, values in BUDGET_ARGS.items():
    for value, flavour in values:
        case(f"Budget({arg}={value!r})",
             lambda a=arg, v=value: qm.Budget("5 CNY" if a != "currency" else "5", **{a: v}),
             flavour)
for value in ("x", None, [], {}, "-5 CNY", -1, math.nan, math.inf, "inf CNY", "5 XYZ", True,
              "1e400 CNY", "5", Decimal("NaN"), "5 CNY USD", b"5"):
    case(f"Budget(limit={value!r})", lambda v=value: qm.Budget(v), ValueError)
case("Budget('5 CNY', currency='USD')", lambda: qm.Budget("5 CNY", currency="USD"), ValueError)
case("Budget('5 USD', currency='CNY')", lambda: qm.Budget("5 USD", currency="CNY"), ValueError)


def _budget(**kw: Any) -> qm.Budget:
    return qm.Budget("5 CNY", **kw)


for value in (None, "x", [], -1, math.nan, "5 USD", Decimal("Infinity"), True, "1e400", b"1",
              "6 CNY"):
    case(f"Budget.reserve({value!r})", lambda v=value: _budget().reserve(v))
case("Budget.reserve(key=5)", lambda: _budget().reserve("1 CNY", key=5), TypeError)
case("Budget.reserve(key='')", lambda: _budget().reserve("1 CNY", key=""), ValueError)
case("Budget(scope=user).reserve() without key", lambda: _budget(scope="user").reserve("1"))
case("Budget.reserve(unpriced cost)", lambda: _budget().reserve(
    qm.Cost(None, "CNY", "m", "cn", unpriced="no price")))
case("Budget.reserve(cost in USD)", lambda: _budget().reserve(
    qm.Cost(Decimal(1), "USD", "m", "cn")))
for value in ("x", None, 5, (1, 2), Opaque()):
    case(f"Budget.commit({value!r})", lambda v=value: _budget().commit(v), TypeError)
    case(f"Budget.release({value!r})", lambda v=value: _budget().release(v), TypeError)
for value in ("x", -1, "1 USD", math.nan, [], Decimal("-0.5")):
    case(f"Budget.commit(cost={value!r})",
         lambda v=value: (lambda b: b.commit(b.reserve("1 CNY"), v))(_budget()))
case("Budget.status(key=5)", lambda: _budget().status(key=5), TypeError)
case("Budget.status(per-user, no key)", lambda: _budget(scope="user").status())

# --- the limiter ---------------------------------------------------------------------------

LIMITER_ARGS: dict[str, list[tuple[Any, type[BaseException] | None]]] = {
    "store": [(5, TypeError), ([], TypeError), ("ftp://x", ValueError), (Opaque(), TypeError),
              ("", ValueError)],
    "account": [("", ValueError), (None, TypeError), (5, TypeError)],
    "region": [(5, TypeError), ("", ValueError)],
    "limits": [([("m", 1)], TypeError), ({"m": 5}, TypeError), ({"m": (10,)}, TypeError),
               ({"m": (1, 2, 3)}, TypeError), ({"m": ("a", None)}, TypeError),
               ({"m": (0, None)}, ValueError), ({"m": (-1, 1)}, ValueError),
               ({5: (1, 1)}, TypeError), ("x", TypeError), (5, TypeError),
               ({"m": None}, TypeError), ({"m": (1.5, None)}, TypeError),
               ({"m": (True, None)}, TypeError)],
    "default": [(5, TypeError), ((1, 2), TypeError), ("x", TypeError)],
    "smooth": [("yes", TypeError), (1, TypeError), (None, TypeError)],
    "on_store_error": [("x", ValueError), (None, ValueError)],
    "catalogue": [("x", TypeError), (5, TypeError)],
    "clock": [("x", TypeError)],
    "sleep": [(5, TypeError)],
    "async_sleep": [("x", TypeError)],
}
for arg, values in LIMITER_ARGS.items():
    for value, flavour in values:
        case(f"RateLimiter({arg}={value!r})", lambda a=arg, v=value: qm.RateLimiter(**{a: v}),
             flavour)
for value in (0, -1, 1.5, "10", True, math.nan):
    case(f"RateLimit(rpm={value!r})", lambda v=value: qm.RateLimit(v, None), ValueError)
    case(f"RateLimit(tpm={value!r})", lambda v=value: qm.RateLimit(None, v), ValueError)


def _full() -> qm.RateLimiter:
    limiter = qm.RateLimiter(limits={"m": (1, 100)}, smooth=False)
    limiter.acquire("m")
    return limiter


def _acquirers() -> dict[str, Callable[..., Any]]:
    return {
        "acquire": lambda lim, *a, **kw: lim.acquire(*a, **kw),
        "try_acquire": lambda lim, *a, **kw: lim.try_acquire(*a, **kw),
        "acquire_async": lambda lim, *a, **kw: asyncio.run(lim.acquire_async(*a, **kw)),
    }


for mname, call in _acquirers().items():
    for value, flavour in [*BAD_MODELS, (None, ValueError)]:
        case(f"RateLimiter.{mname}(model={value!r})",
             lambda c=call, v=value: c(qm.RateLimiter(), v), flavour)
    for value in (-1, 1.5, "10", True, None, math.nan):
        case(f"RateLimiter.{mname}(tokens={value!r})",
             lambda c=call, v=value: c(qm.RateLimiter(), "qwen-plus", v))
    case(f"RateLimiter.{mname}(tokens over the tpm)",
         lambda c=call: c(qm.RateLimiter(limits={"m": (5, 100)}), "m", 101))
    waits = {} if mname == "try_acquire" else {"timeout": 0.05}
    case(f"RateLimiter.{mname}(full window)", lambda c=call, w=waits: c(_full(), "m", **w))
for mname in ("acquire", "acquire_async"):
    call = _acquirers()[mname]
    for value, flavour in [("x", TypeError), (math.nan, ValueError), (-1, ValueError),
                           ([], TypeError), (True, TypeError), ("10", TypeError),
                           (-math.inf, ValueError)]:
        # On a full window: a NaN timeout used to wait forever.
        case(f"RateLimiter.{mname}(timeout={value!r})",
             lambda c=call, v=value: c(_full(), "m", timeout=v), flavour)
    for value in ("no", 1, None):
        case(f"RateLimiter.{mname}(wait={value!r})",
             lambda c=call, v=value: c(qm.RateLimiter(), "qwen-plus", wait=v), TypeError)
for value in ("x", None, (1, 2), Opaque(), 5):
    case(f"RateLimiter.reconcile({value!r})",
         lambda v=value: qm.RateLimiter().reconcile(v, 1), TypeError)
    case(f"RateLimiter.release({value!r})", lambda v=value: qm.RateLimiter().release(v), TypeError)
for value in (-1, "x", 1.5, None, True):
    case(f"RateLimiter.reconcile(total_tokens={value!r})",
         lambda v=value: (lambda lim: lim.reconcile(lim.acquire("qwen-plus"), v))(
             qm.RateLimiter()))
for value in (5, [], ""):
    case(f"RateLimiter.usage({value!r})", lambda v=value: qm.RateLimiter().usage(v))
    case(f"RateLimiter.limits_for({value!r})", lambda v=value: qm.RateLimiter().limits_for(v))

# --- stores --------------------------------------------------------------------------------

for value, flavour in [(5, TypeError), ([], TypeError), ("", ValueError), ("ftp://x", ValueError),
                       (b"memory://", TypeError), ("mem", ValueError),
                       ("sqlite:///nonexistent-dir/a/b.db", None)]:
    case(f"open_store({value!r})", lambda v=value: qm.open_store(v), flavour)
case("open_store(redis on a closed port)",
     lambda: qm.open_store("redis://127.0.0.1:1/0").window_sum("k", 1))

# --- loading a catalogue -------------------------------------------------------------------

for value, flavour in [(5, TypeError), ("", ValueError), ([], TypeError),
                       ("/nonexistent/models.yaml", None)]:
    case(f"Catalogue.load(path={value!r})", lambda v=value: Catalogue.load(v), flavour)
for value, flavour in [("override.yaml", TypeError), (5, TypeError), ([5], TypeError),
                       ([""], ValueError), (["/nonexistent/o.yaml"], None)]:
    case(f"Catalogue.load(overrides={value!r})",
         lambda v=value: Catalogue.load(overrides=v), flavour)

# --- log reading and writing ----------------------------------------------------------------

for value, flavour in [(5, TypeError), (None, TypeError), ("", ValueError), (b"x", TypeError),
                       ("/nonexistent/usage.jsonl", None), ("/nonexistent/usage.db", None),
                       ([1, 2], TypeError), ({"a": 1}, TypeError), ("a\x00b", ValueError)]:
    case(f"read_usage({value!r})", lambda v=value: qm.read_usage(v), flavour)
for value, flavour in [(5, TypeError), ("", ValueError), ([], TypeError)]:
    case(f"JsonlLog({value!r})", lambda v=value: JsonlLog(v), flavour)
    case(f"Meter(log={value!r})", lambda v=value: qm.Meter(log=v), flavour)
case("JsonlLog(fsync='yes')", lambda: JsonlLog("/dev/null", fsync="yes"), TypeError)


# --- files: catalogue overrides and logs, written per case ---------------------------------

# Ten copies of the previous anchor, nine levels deep: 10**9 values once expanded.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))
CATALOGUE_FILES: dict[str, bytes] = {
    "utf16": "models: {}\n".encode("utf-16"),
    "utf16-be-no-bom": "models: {}\n".encode("utf-16-be"),
    "utf32": "models: {}\n".encode("utf-32"),
    "latin1": "models:\n  qwen-plus:\n    note: café\n".encode("latin-1"),
    "invalid-utf8": b"models:\n  qwen-plus:\n    note: \x80\x81\xfe\n",
    "models-int": b"models: 5\n",
    "models-list": b"models: [1, 2]\n",
    "top-list": b"- a\n- b\n",
    "top-scalar": b"just text\n",
    "name_rules-int": b"name_rules: 5\n",
    "name_rules-str": b"name_rules: 'x'\n",
    "name_rules-map": b"name_rules: {a: 1}\n",
    "name_rules-item-int": b"name_rules: [5]\n",
    "name_rules-bad-regex": b"name_rules: [{match: '('}]\n",
    "name_rules-no-match": b"name_rules: [{family: qwen3}]\n",
    "date-month-13": b"sources:\n  X: {url: u, as_of: 2024-13-01, kind: official}\n",
    "date-feb-30": b"sources:\n  X: {url: u, as_of: 2024-02-30, kind: official}\n",
    "date-feb-29-2023": b"models:\n  qwen-plus:\n    regions:\n      cn: {as_of: 2023-02-29}\n",
    "date-day-0": b"a: 2024-01-00\n",
    "date-year-0": b"a: 0000-01-01\n",
    "timestamp-hour-25": b"a: 2024-01-01 25:00:00\n",
    "unclosed-list": b"models: [\n",
    "unclosed-map": b"models: {\n",
    "tab-indent": b"models:\n\t- x\n",
    "bad-mapping": b"a: b: c\n",
    "python-object": b"a: !!python/object/apply:os.system ['true']\n",
    "int-tag-on-text": b"a: !!int abc\n",
    "undefined-alias": b"a: *nothing\n",
    "recursive-alias": b"a: &a [*a]\n",
    "alias-bomb": BOMB.encode(),
    "deep-nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "family-int": b"models:\n  qwen-plus:\n    family: 5\n",
    "negative-price": b"models:\n  qwen-plus:\n    regions:\n      cn:\n"
                      b"        price: {input: -1, output: 1}\n",
    "price-text": b"models:\n  qwen-plus:\n    regions:\n      cn:\n"
                  b"        price: {input: cheap, output: 1}\n",
    "limits-negative": b"models:\n  qwen-plus:\n    regions:\n      cn:\n"
                       b"        limits: {context: -5}\n",
    "model-not-mapping": b"models:\n  qwen-plus: 5\n",
    "nul-bytes": b"models:\x00\x00\n",
    "document-stream": b"a: 1\n---\nb: 2\n",
}


@pytest.mark.parametrize("name", sorted(CATALOGUE_FILES))
def test_bad_catalogue_override_names_the_file(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(CATALOGUE_FILES[name])
    outcome = guarded(lambda: Catalogue.load(overrides=[path]))
    error = outcome.get("error")
    assert isinstance(error, CatalogueError), outcome
    assert str(path) in str(error)


@pytest.mark.parametrize("target", ["missing", "folder"])
def test_unreadable_catalogue_override(target, tmp_path):
    path = tmp_path / "x.yaml" if target == "missing" else tmp_path
    outcome = guarded(lambda: Catalogue.load(overrides=[path]))
    assert isinstance(outcome.get("error"), CatalogueError), outcome


def test_override_named_in_the_environment_fails_every_api_call_typed(tmp_path, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name_rules: 5\n")
    monkeypatch.setenv("QWEN_METER_CATALOGUE", str(path))
    for call in (lambda: qm.count_tokens("x"), lambda: qm.cost(USAGE, "qwen-plus"),
                 lambda: qm.RateLimiter().acquire("qwen-plus")):
        error = guarded(call).get("error")
        assert isinstance(error, CatalogueError) and str(path) in str(error)


LOG_FILES: dict[str, bytes] = {
    "number": b"5\n", "string": b'"x"\n', "list": b"[1]\n", "null": b"null\n",
    "empty-object": b"{}\n", "tags-int": b'{"model": "m", "tags": 5}\n',
    "no-model": b'{"prompt_tokens": 1}\n',
}


@pytest.mark.parametrize("name", sorted(LOG_FILES))
def test_log_line_that_is_not_a_record_is_skipped_and_named(name, tmp_path):
    # the same rule as the report: skipped, named with its line, never summed
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b'{"model": "m"}\n' + LOG_FILES[name])
    with pytest.warns(qm.InvalidRecordWarning, match="line 2"):
        records = qm.read_usage(path)
    assert [r.model for r in records] == ["m"]


def test_sqlite_log_that_is_not_a_database(tmp_path):
    path = tmp_path / "usage.db"
    path.write_bytes(b"this is not SQLite" * 100)
    assert_typed(lambda: qm.read_usage(path))


# --- running the table ---------------------------------------------------------------------

def test_the_table_is_large_enough():
    files = len(CATALOGUE_FILES) + len(LOG_FILES) + 4
    assert len(CASES) + files >= 400


@pytest.mark.parametrize(("name", "fn", "flavour"), CASES, ids=[c[0][:90] for c in CASES])
def test_malformed_input_raises_a_typed_error(name, fn, flavour):
    assert_typed(fn, flavour)


# --- what must keep working ------------------------------------------------------------------

@pytest.mark.parametrize("at", [dt.date(2025, 6, 1), dt.datetime(2025, 6, 1, 12, 0),
                                dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc), "2025-06-01",
                                "2025-06-01T12:00:00", "2025-06-01T12:00:00Z",
                                "2025-06-01T12:00:00+08:00"])
def test_cost_at_takes_dates_datetimes_and_iso_strings(at):
    priced = qm.cost(USAGE, "qwen-plus", at=at)
    assert priced == qm.cost(USAGE, "qwen-plus", at=dt.date(2025, 6, 1))
    assert qm.estimate_cost(OK, "qwen-plus", at=at).low.as_of == priced.as_of


def test_an_old_date_prices_at_an_older_offer():
    old = qm.cost(USAGE, "qwen-plus", at="2024-01-01")
    new = qm.cost(USAGE, "qwen-plus")
    assert old.as_of is not None and new.as_of is not None and old.as_of <= new.as_of


def test_readme_memory_store_form_works():
    limiter = qm.RateLimiter("memory")
    assert isinstance(limiter.store, qm.MemoryStore)


def test_money_with_its_currency_agreeing_is_fine():
    assert qm.Budget("5 CNY", currency="CNY").currency == "CNY"
    assert qm.Budget("5 cny").currency == "CNY"


def test_zero_timeout_fails_fast_and_infinite_is_refused():
    """Issue #11: a timeout is finite and >= 0; None is the way to wait without bound."""
    limiter = _full()
    error = guarded(lambda: limiter.acquire("m", timeout=0)).get("error")
    assert isinstance(error, qm.RateLimited)
    with pytest.raises(qm.InvalidTimeout):
        qm.RateLimiter().acquire("qwen-plus", timeout=math.inf)
    assert qm.RateLimiter().acquire("qwen-plus", timeout=None)


def test_type_errors_are_also_value_errors_of_the_family():
    with pytest.raises(InvalidArgument):
        qm.count_tokens(5)  # type: ignore[arg-type]
    assert issubclass(InvalidArgumentType, TypeError) and issubclass(InvalidArgument, ValueError)


# --- hypothesis: anything at all in a slot is either taken or refused, typed ---------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.binary(max_size=10), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(Opaque()))


def _taken_or_typed(fn: Callable[[], Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = guarded(fn)
    if "error" in outcome:
        assert isinstance(outcome["error"], QwenMeterError), repr(outcome["error"])


@given(ANYTHING)
def test_flags_take_only_bools(value):
    outcome = guarded(lambda: qm.cost(USAGE, "qwen-plus", batch=value))
    if isinstance(value, bool):
        assert "value" in outcome
    else:
        assert isinstance(outcome.get("error"), InvalidArgumentType)


@given(st.one_of(ANYTHING, st.floats(allow_nan=True, allow_infinity=True)))
def test_any_timeout_on_a_full_window_returns_quickly(value):
    # None, inf and long timeouts rightly wait for the window (up to a minute): not here.
    assume(value is not None and not (isinstance(value, (int, float))
                                      and not isinstance(value, bool) and value > 1))
    outcome = guarded(lambda: _full().acquire("m", timeout=value), limit=2.0)
    assert isinstance(outcome.get("error"), QwenMeterError), outcome


@given(ANYTHING, ANYTHING)
def test_any_budget_lease_and_thresholds(lease, thresholds):
    _taken_or_typed(lambda: qm.Budget("5 CNY", lease=lease, thresholds=thresholds))


@given(ANYTHING)
def test_any_model_name(value):
    _taken_or_typed(lambda: qm.count_tokens("hi", value))
    _taken_or_typed(lambda: qm.RateLimiter().try_acquire(value))


@given(ANYTHING)
def test_any_at(value):
    _taken_or_typed(lambda: qm.cost(USAGE, "qwen-plus", at=value))


@given(ANYTHING)
def test_any_limiter_limits(value):
    _taken_or_typed(lambda: qm.RateLimiter(limits={"m": value}))
    _taken_or_typed(lambda: qm.RateLimiter(limits=value))


@given(st.one_of(st.binary(max_size=200),
                 st.text(alphabet="ab:-[]{}&*!, \n\t'\"", max_size=60).map(str.encode)))
def test_any_bytes_as_a_catalogue_override(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cat")
    base = folder / "base.yaml"  # a tiny base: the override's parsing is the subject
    base.write_bytes(b"models: {}\n")
    path = folder / "o.yaml"
    path.write_bytes(data)
    outcome = guarded(lambda: Catalogue.load(base, overrides=[path]))
    if "error" in outcome:
        assert isinstance(outcome["error"], CatalogueError), repr(outcome["error"])


@given(st.binary(max_size=300))
def test_any_bytes_as_a_usage_log(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("log") / "usage.jsonl"
    path.write_bytes(data)
    _taken_or_typed(lambda: read_jsonl(path))


def test_torn_lines_are_skipped_and_named(tmp_path):
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b'{"model": "m"}\n{"model": "m", "id": "ab\n{"model": "n"}\n{"mod')
    with pytest.warns(TornLineWarning) as seen:
        records = read_jsonl(path)
    assert [r.model for r in records] == ["m", "n"]
    assert {str(w.message) for w in seen} == {f"{path}, line 2: torn record skipped",
                                              f"{path}, line 4: torn record skipped"}


def test_path_objects_work_for_logs(tmp_path):
    log = JsonlLog(Path(tmp_path) / "a" / "usage.jsonl")
    log.close()


METER_CASES = [
    {"budget": 5}, {"budget": [qm.Budget("1 CNY"), "x"]}, {"limiter": "memory"},
    {"tags": 5}, {"tags": "a,b"}, {"tags": [1]}, {"user": 5}, {"region": 5},
    {"preflight": "no"}, {"wait": 1}, {"calibrate": None}, {"record_refused": "yes"},
    {"timeout": float("nan")}, {"timeout": -1}, {"timeout": "10"}, {"retry": 3},
    {"observers": [object()]}, {"observers": 5}, {"unpriced": "maybe"},
    {"fallback_price": (1, 2)}, {"catalogue": "x"}, {"log": 5},
]


@pytest.mark.parametrize("options", METER_CASES, ids=[next(iter(c)) for c in METER_CASES])
def test_meter_arguments_are_checked(options):
    with pytest.raises(qm.QwenMeterError) as caught:
        qm.Meter(log=None, **options) if "log" not in options else qm.Meter(**options)
    assert isinstance(caught.value, (TypeError, ValueError))
    assert next(iter(options)) in str(caught.value)
