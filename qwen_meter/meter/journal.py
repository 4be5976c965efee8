"""The write-ahead journal: an *intent* before a request leaves, its *outcome* after.

Before a metered request is sent, the meter appends an intent to its usage log: the call's id,
what it is (model, endpoint, region, user, tags), its estimate, the ids of the holds it took
(each budget reservation's ledger key, id and amount; the limiter permit's account, model,
second and tokens) and who wrote it (host, pid and a token of the process's start). Settlement
appends the :class:`~qwen_meter.meter.records.UsageRecord` with the same id — the outcome.

Readers fold the two into one record per call (:func:`fold`): the outcome when there is one,
else the intent shown as an unsettled call (status ``pending``). An intent whose writer died
is settled by :mod:`~qwen_meter.meter.recovery` as status ``lost``.

An intent line starts with ``{"journal":"intent"`` (records start with ``{"model"``), so a
scan can tell the two apart without parsing every line; readers of 0.2 see an intent as a
record of status ``pending``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import jsonline
from .records import UsageRecord

if TYPE_CHECKING:
    from .call import MeteredCall

INTENT = "intent"
#: How an intent line starts (and no record line does).
INTENT_PREFIX = b'{"journal":"intent"'
#: The first top-level ``"id"`` of a line (no JSON string can contain this sequence, and the
#: only key before ``id`` in a record is ``model``, a string).
_ID = re.compile(rb'"id":"([^"\\]+)"')
#: The status a reader gives an intent that has no outcome yet.
PENDING = "pending"
#: The status recovery gives an intent whose writer died.
LOST = "lost"

_identity: tuple[int, dict[str, Any]] | None = None


def start_token(pid: int) -> str | None:
    """Something that changes when ``pid`` is reused by another process: the boot id and the
    process's start time in clock ticks (Linux ``/proc``); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            boot = handle.read().strip().decode()
    except OSError:
        return None
    # Field 22 (starttime); the command name in parentheses may hold spaces.
    fields = stat[stat.rfind(b")") + 2:].split()
    return f"{boot}:{fields[19].decode()}" if len(fields) > 19 else None


def writer_identity() -> dict[str, Any]:
    """This process as an intent names it: host, pid and start token (computed once per pid,
    so a forked child names itself, not its parent)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, {"host": socket.gethostname(), "pid": pid,
                           "start": start_token(pid)})
    return _identity[1]


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or no signals (Windows)
        return True
    return True


def writer_gone(writer: Any, age: float, max_age: float) -> bool:
    """Whether the process that wrote an intent is dead (its call will never settle).

    On this host: its pid is gone, or now belongs to another process (a different start
    token). For another host, which cannot be asked: the intent is older than ``max_age``
    (by default the budgets' hold lease — a live caller settles long before that).
    """
    if not isinstance(writer, Mapping):
        return age > max_age
    mine = writer_identity()
    if writer.get("host") != mine["host"]:
        return age > max_age
    pid = writer.get("pid")
    if not isinstance(pid, int):
        return age > max_age
    if pid == mine["pid"]:
        return bool(writer.get("start") != mine["start"])
    if not _pid_running(pid):
        return True
    token = writer.get("start")
    return token is not None and start_token(pid) not in (None, token)


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount.normalize():f}"


def intent_of(call: MeteredCall) -> dict[str, Any]:
    """The intent line of a call that is about to be sent (JSON values, journal key first)."""
    estimate = call.estimate
    holds = [{"budget": r.budget, "key": r.key, "id": r.id, "scope": r.scope_value,
              "amount": _money(r.amount), "expire_at": r.expire_at, "degraded": r.degraded}
             for _, r in call.reservations]
    permit = call.permit
    low, high = call.estimated_costs
    return {
        "journal": INTENT, "model": call.model, "id": call.id,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(), "version": 1,
        "status": PENDING, "region": call.region, "endpoint": call.endpoint,
        "stream": call.stream, "estimated_prompt_tokens": call.estimated_prompt_tokens,
        "estimate_exact": None if call.prompt is None else call.prompt.exact,
        "estimated_cost_low": low, "estimated_cost_high": high,
        "currency": estimate.currency if estimate else None,
        "tokens_reserved": call.tokens_reserved, "tags": list(call.tags), "user": call.user,
        "metadata": dict(call.metadata), "holds": holds,
        "permit": None if permit is None else {
            "id": permit.id, "account": permit.account, "model": permit.model,
            "bucket": permit.bucket, "tokens": permit.tokens, "degraded": permit.degraded},
        "writer": writer_identity()}


def intent_json(intent: Mapping[str, Any]) -> str:
    return jsonline.text(intent)


def intent_line(intent: Mapping[str, Any]) -> bytes:
    """The intent as the JSONL log writes it: one line, UTF-8, with its newline."""
    return jsonline.line(intent)


def is_intent(data: Mapping[str, Any]) -> bool:
    return data.get("journal") == INTENT


def pending_record(intent: Mapping[str, Any]) -> UsageRecord:
    """An intent with no outcome, as a reader shows it: status ``pending``, nothing used yet."""
    return UsageRecord.from_dict({**intent, "status": PENDING,
                                  "tags": tuple(intent.get("tags") or ())})


def line_id(line: bytes) -> str | None:
    """The record id of a JSONL line, without parsing it."""
    found = _ID.search(line)
    return found.group(1).decode() if found else None


def fold(items: Iterable[Mapping[str, Any] | UsageRecord]) -> list[UsageRecord]:
    """One record per call: each intent replaced by its outcome (at the outcome's place), an
    intent without one kept where it was as a ``pending`` record."""
    out: list[UsageRecord | None] = []
    slots: dict[str, int] = {}
    for item in items:
        if isinstance(item, UsageRecord):
            slot = slots.pop(item.id, None)
            if slot is not None:
                out[slot] = None
            out.append(item)
        else:
            slots[str(item.get("id"))] = len(out)
            out.append(pending_record(item))
    return [r for r in out if r is not None]

