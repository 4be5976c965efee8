"""Recovery: settling the calls of a process that died between sending and settling.

A :class:`~qwen_meter.meter.pipeline.Meter` (and the gateway, once for all its tenants) that
starts on a usage log looks for intents without an outcome (:mod:`.journal`). An intent whose
writer is gone — on this host: its pid is not running, or now belongs to another process; on
another host: it is older than ``max_age``, by default the longest budget lease — is settled:

- its outcome is a record with the same id and status ``lost``, usage estimated;
- it is charged **the amount its budget holds reserved** (the estimate's high end, which
  bounds what DashScope can bill for the request), and each hold is committed at that amount
  in the shared store. The request may have been answered — DashScope billed *something* —
  and nothing tells how much; the hold is the figure the caller accepted before sending, so
  the budget is never under-charged, the record and the budget's committed total agree to
  the unit, and the limiter window (which holds the same estimate in tokens) needs no change.
  ``estimated_cost_low`` stays in the record for anyone who prefers the other end.
- an intent whose holds cannot be reached (the store is down) is left pending and tried again
  at the next start: a commit counts once, so trying again is safe.

**Once only.** Recovery holds an exclusive lock file beside the log (``<log>.lock``) while it
reads the pending intents and writes their outcomes, so two processes starting at once on one
log settle each intent once: the second finds the outcomes written. Behind that, the store
settles a reservation once (a second commit of the same reservation id is refused as already
settled and counts nothing), and an SQLite log refuses a second record with the same id.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..limits.budget import Budget
from ..limits.limiter import RateLimiter
from ..limits.store import StoreUnavailable
from .journal import LOST, writer_gone
from .logbase import UsageLog
from .observers import Observer, notify
from .records import UsageRecord
from .redaction import redact

log = logging.getLogger("qwen_meter.meter")
#: When no budget says how long a hold lives: the budgets' default lease.
DEFAULT_MAX_AGE = 600.0


def recover(usage_log: UsageLog | None, *, budgets: Sequence[Budget] = (),
            limiters: Sequence[RateLimiter] = (), max_age: float | None = None,
            observers: Sequence[Observer] = ()) -> list[UsageRecord]:
    """Settle every intent of ``usage_log`` whose writer died as ``lost``; the records written.

    ``budgets`` and ``limiters`` are where the holds live (matched by budget name and ledger
    key, and by limiter account). ``max_age``: seconds after which an intent written on
    another host is taken as lost (default: the longest of the budgets' leases, else 600)."""
    if usage_log is None:
        return []
    if max_age is None:
        max_age = max((b.lease for b in budgets), default=DEFAULT_MAX_AGE)
    lost: list[UsageRecord] = []
    with usage_log.recovery_lock():
        kept = []
        now = time.time()
        for intent in usage_log.pending_intents():
            if not writer_gone(intent.get("writer"), now - _started(intent, now), max_age):
                kept.append(intent)
                continue
            record = settle_lost(intent, budgets, limiters)
            if record is None:
                kept.append(intent)
                continue
            usage_log.append(record)
            lost.append(record)
        usage_log.recovered(kept)
    usage_log.flush()
    if lost:
        log.warning("recovered %d call(s) whose process ended before settling them "
                    "(status lost, charged at their holds)", len(lost))
    for record in lost:
        notify(observers, "on_record", record, None)
    return lost


def _started(intent: Mapping[str, Any], default: float) -> float:
    try:
        return dt.datetime.fromisoformat(str(intent.get("time"))).timestamp()
    except ValueError:
        return default - 10 * DEFAULT_MAX_AGE  # no readable time: old enough


def _budget_for(hold: Mapping[str, Any], budgets: Sequence[Budget]) -> Budget | None:
    key = str(hold.get("key"))
    for budget in budgets:
        if budget.name == hold.get("budget") and \
                key.startswith(f"budget:{budget.name}:{budget.scope}="):
            return budget
    return None


def settle_lost(intent: Mapping[str, Any], budgets: Sequence[Budget],
                limiters: Sequence[RateLimiter]) -> UsageRecord | None:
    """The ``lost`` record of ``intent``, its holds committed (None: the store is down)."""
    writer = intent.get("writer") or {}
    notes = [f"the process that sent this call ({writer.get('host')}:{writer.get('pid')}) "
             "ended before settling it; charged at its budget hold (the estimate's high end)"]
    degraded = False
    for hold in intent.get("holds") or ():
        budget = _budget_for(hold, budgets)
        if budget is None:
            degraded = True
            notes.append(f"budget {hold.get('budget')!r} is not configured here: its hold was "
                         "not committed and expires with its lease")
            continue
        try:
            result = budget.commit_journaled(hold)
        except StoreUnavailable as exc:
            log.warning("cannot settle lost call %s yet: %s", intent.get("id"), redact(str(exc)))
            return None
        if not result.ok:
            notes.append(f"budget {budget.name!r}: the hold was already {result.state} in the "
                         "store; nothing was counted twice")
    prompt = int(intent.get("estimated_prompt_tokens") or 0)
    reserved = int(intent.get("tokens_reserved") or prompt)
    completion = 0 if intent.get("endpoint") == "embeddings" else max(0, reserved - prompt)
    permit = intent.get("permit")
    if isinstance(permit, Mapping):
        limiter = next((lim for lim in limiters if lim.account == permit.get("account")), None)
        try:
            if limiter is not None:
                limiter.settle_journaled(permit, prompt + completion)
        except StoreUnavailable as exc:  # the window forgets it in 61 s anyway
            degraded = True
            notes.append(f"limiter reconcile failed: {redact(str(exc))}")
    cost = intent.get("estimated_cost_high")
    return UsageRecord(
        model=str(intent.get("model")), id=str(intent.get("id")),
        time=str(intent.get("time")), region=intent.get("region"),
        endpoint=str(intent.get("endpoint") or "chat"), stream=bool(intent.get("stream")),
        status=LOST, error="process ended before the call was settled",
        error_kind="ProcessLost", prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=prompt + completion, usage_estimated=True,
        estimated_prompt_tokens=intent.get("estimated_prompt_tokens"),
        estimate_exact=intent.get("estimate_exact"),
        estimated_cost_low=intent.get("estimated_cost_low"), estimated_cost_high=cost,
        cost=cost, currency=intent.get("currency"),
        unpriced=None if cost is not None else "lost call with no estimate (unpriced model)",
        tags=tuple(intent.get("tags") or ()), user=intent.get("user"),
        metadata=dict(intent.get("metadata") or {}), warnings=tuple(notes), degraded=degraded)
