"""The meter: the pipeline every metered call runs through.

    resolve model → count prompt → pre-flight → cost estimate → budget reservation →
    limiter acquire → (the client's call) → parse usage → cost → commit / reconcile → log

:meth:`Meter.begin` runs everything before the call and returns a :class:`MeteredCall`;
:meth:`MeteredCall.finish` (or :meth:`MeteredCall.fail`) settles it. The adapters in
``qwen_meter.clients`` call these around the real client; :meth:`Meter.wrap` picks one.

The stages and where they live:

- :mod:`~qwen_meter.meter.plan` — the pure part of begin: resolve, count, check, estimate, and
  decide what to hold (no store touched);
- this module — the :class:`Meter`: its holds (budget reservations, limiter permit), refused
  calls' records, the log write, the adapters;
- :mod:`~qwen_meter.meter.call` — the :class:`MeteredCall`: retries and settlement;
- :mod:`~qwen_meter.meter.calibration` — the learned prompt-count offsets;
- :mod:`~qwen_meter.meter.config` — ``Meter()``'s argument checks and defaults;
- :mod:`~qwen_meter.meter.regions` — a call's region and the limiter for it.

Every step has an ``_async`` twin (:meth:`Meter.begin_async`, :meth:`MeteredCall.finish_async`,
:meth:`MeteredCall.fail_async`, :meth:`MeteredCall.retry_async`). Both run the same step code
(:mod:`qwen_meter.meter.steps`): decisions are plain code, and each budget, limiter or log
operation is handed to a driver that either runs it here or awaits it off the event loop.

Settlement never raises (see :mod:`~qwen_meter.meter.call`): once DashScope has answered, the
caller gets the answer whatever fails afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..base.errors import InvalidMessages, QwenMeterError
from ..billing.unlisted import FallbackPrice, Resolved, resolve
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec
from ..limits.budget import Budget, Reservation
from ..limits.limiter import RateLimiter
from . import prepare, steps
from .adapters import client_adapters
from .calibration import Calibration
from .call import MeteredCall
from .config import DEFAULT_LOG, _check_meter_args, _DefaultLog, default_log_path
from .journal import intent_of
from .log import UsageLog, UsageRecord, open_log
from .observers import Observer, notify
from .outcomes import OpenStreams
from .plan import _Plan, make_plan, refused_record
from .regions import Placement, memo_in
from .server_errors import RetryPolicy

log = logging.getLogger("qwen_meter.meter")

#: How often (seconds) a meter on the default catalogue looks for a newly installed one or a
#: changed $QWEN_METER_CATALOGUE: once a second, not on every call (a stat and five
#: environment reads per call cost as much as counting a short prompt).
CATALOGUE_RECHECK = 1.0


class UnsupportedClient(QwenMeterError, TypeError):
    """An object :meth:`Meter.wrap` does not know how to meter."""


class Meter(Placement):
    """Checks, limits, prices and logs every call of the clients it wraps.

    ``limiter`` and ``budget`` are optional (a budget or a list of them); ``log`` is a path
    (``.jsonl``, or ``.db`` for SQLite), a :class:`~qwen_meter.log.UsageLog`, or None; by
    default ``$QWEN_METER_LOG``, else ``usage.jsonl`` in the user's data folder
    (see :func:`default_log_path`: the platform's user data folder) — never the working folder.
    Every argument is checked here, each bad one named (``Meter(tags=)``).
    ``preflight`` checks limits before sending; ``wait`` lets the limiter wait for a slot
    (else it raises at once); ``calibrate`` learns systematic prompt-count gaps.

    ``region``: when given, every call is priced and limited there; otherwise each call's
    region comes from the client's endpoint (``dashscope-intl.aliyuncs.com`` → ``intl``), then
    ``$QWEN_METER_REGION``, then ``cn``.

    ``unpriced``: what to do, under a hard budget, with a call the catalogue cannot price (an
    unknown model, a model not offered in the region): ``"refuse"`` (default — raise
    :class:`UnpricedCall` before sending, naming the fixes) or ``"allow"`` (send it, hold
    nothing, record it unpriced). ``fallback_price`` (:class:`~qwen_meter.unlisted.FallbackPrice`)
    prices such calls instead. Without a hard budget they always go through.

    ``recover``: on start, settle the calls a process that died left unsettled in this log
    (its journal's intents; status ``lost``, see :mod:`~qwen_meter.meter.recovery`).

    ``record_refused``: calls refused before sending (budget, rate limit, pre-flight, unpriced)
    are recorded with status ``refused`` and the reason; False turns that off.

    Attribution of a call: ``user`` is the ``user=`` argument of :meth:`begin`, else the
    request's own ``user`` field, else the innermost :func:`~qwen_meter.attribute` block's,
    else this meter's ``user``. Tags add up (meter, blocks, call); metadata merges (meter
    blocks, then the request's ``metadata`` field, later wins).
    """

    def __init__(self, *, region: str | None = None, catalogue: Catalogue | None = None,
                 limiter: RateLimiter | None = None,
                 budget: Budget | Sequence[Budget] | None = None,
                 log: str | os.PathLike[str] | UsageLog | _DefaultLog | None = DEFAULT_LOG,
                 preflight: bool = True, wait: bool = True, timeout: float | None = None,
                 retry: RetryPolicy | None = None, calibrate: bool = True,
                 tags: Sequence[str] = (), user: str | None = None,
                 observers: Sequence[Observer] = (), unpriced: str = "refuse",
                 fallback_price: FallbackPrice | None = None,
                 record_refused: bool = True, recover: bool = True) -> None:
        _check_meter_args(region=region, catalogue=catalogue, limiter=limiter, budget=budget,
                          log=log, flags={"preflight": preflight, "wait": wait,
                                          "calibrate": calibrate,
                                          "record_refused": record_refused,
                                          "recover": recover},
                          timeout=timeout, retry=retry, tags=tags, user=user,
                          observers=observers, unpriced=unpriced,
                          fallback_price=fallback_price)
        self.region = region
        self.catalogue = catalogue
        self.limiter = limiter
        self.budgets = [] if budget is None else [budget] if isinstance(budget, Budget) \
            else list(budget)
        self.log = open_log(default_log_path() if isinstance(log, _DefaultLog) else log)
        self.preflight = preflight
        self.wait = wait
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.calibration = Calibration() if calibrate else None
        self.tags = tuple(tags)
        self.user = user
        self.observers: list[Observer] = list(observers)
        self.unpriced = unpriced
        self.fallback_price = fallback_price
        self.record_refused = record_refused
        self._limiters: dict[str, RateLimiter] = {}
        self.streams = OpenStreams()  # streams handed out and not settled yet
        # What each call would otherwise work out again: the catalogue in use (re-checked
        # once a second), each model name resolved in it, each endpoint URL's region. Each
        # memo entry keeps the catalogue it came from, so a newer catalogue misses them all.
        self._catalogue_in_use: Catalogue | None = None
        self._catalogue_checked = 0.0
        self._resolved: dict[str, tuple[Catalogue, Resolved]] = {}
        self._url_regions: dict[str, tuple[Catalogue, str | None]] = {}
        #: model names begin_async has planned once (their tokenizer and template loaded)
        self._planned: set[str] = set()
        if recover and self.log is not None:
            self._recover()
        self._preparing = prepare.start(self)  # catalogue, tokenizers: loading in a thread

    def _recover(self) -> None:
        """Settle the calls a dead process left in this log (see :mod:`.recovery`)."""
        from .recovery import recover

        try:
            recover(self.log, budgets=self.budgets,
                    limiters=[self.limiter] if self.limiter else [], observers=self.observers)
        except QwenMeterError as exc:  # an unreadable log: the intents wait for the next start
            log.warning("could not recover unsettled calls from the usage log: %s", exc)

    def add_observer(self, observer: Observer) -> None:
        """See every call from now on (OpenTelemetry, Prometheus, logging integrations)."""
        self.observers.append(observer)

    # --- the pipeline -----------------------------------------------------------------------

    def resolve(self, model: Any) -> ModelSpec:
        """The spec the meter uses for ``model`` (a stand-in for names the catalogue lacks)."""
        return self._resolve(model).spec

    def _current_catalogue(self) -> Catalogue:
        """This meter's catalogue, or the default one as of at most a second ago."""
        if self.catalogue is not None:
            return self.catalogue
        now = time.monotonic()
        current = self._catalogue_in_use
        if current is None or now - self._catalogue_checked >= CATALOGUE_RECHECK:
            current = default_catalogue()
            if current is not self._catalogue_in_use:
                self._planned.clear()  # a new catalogue may name other tokenizers
            self._catalogue_in_use = current
            self._catalogue_checked = now
        return current

    def _resolve(self, model: Any) -> Resolved:
        if not isinstance(model, str) or not model.strip():
            raise InvalidMessages(f"the request names no model ({model!r})")
        return memo_in(self._resolved, model, self._current_catalogue(), resolve)

    def begin(self, request: Mapping[str, Any], *, endpoint: str = "chat",
              tags: Sequence[str] = (), user: str | None = None, region: str | None = None,
              url: Any = None) -> MeteredCall:
        """Everything before the call: raises before anything is sent if it may not go.

        ``url`` is the endpoint the client sends to (its region is used unless the meter or
        ``region=`` names one). A refusal is recorded (status ``refused``) and raised."""
        self.streams.settle()
        if self._preparing is not None:  # the loads begun at creation, not done twice
            prepare.wait(self)
        plan = self._plan_or_refusal(request, endpoint, tags, user, region, url)
        if not isinstance(plan, _Plan):
            steps.run(self._write_refusal(plan, request, endpoint, region, url))
            raise plan
        return self._announce(steps.run(self._begin_steps(plan)))

    async def begin_async(self, request: Mapping[str, Any], *, endpoint: str = "chat",
                          tags: Sequence[str] = (), user: str | None = None,
                          region: str | None = None, url: Any = None) -> MeteredCall:
        """:meth:`begin` for asyncio: the limiter wait is awaited, store I/O runs off the
        loop. Counting stays on the loop (pure CPU, cached; in a worker thread it would only
        fight the loop for the GIL) — except for the first call of each model name and one
        that finds a new catalogue, planned in a worker thread once the meter's own loads
        (:mod:`.prepare`, begun when it was created) are done, awaited off the loop."""
        await self.streams.settle_async()
        model = request.get("model") if isinstance(request, Mapping) else None
        if isinstance(model, str) and model in self._planned \
                and not prepare.catalogue_due(self, CATALOGUE_RECHECK):
            plan = self._plan_or_refusal(request, endpoint, tags, user, region, url)
        else:  # in a worker thread, once the meter's own loads are done
            plan = await prepare.first_plan(self, model, request, endpoint, tags, user,
                                            region, url)
        if not isinstance(plan, _Plan):
            await steps.run_async(self._write_refusal(plan, request, endpoint, region, url))
            raise plan
        # Cancelled once the holds were all taken: they are released, and there is no call.
        return self._announce(await steps.run_async(self._begin_steps(plan),
                                                    on_cancel=MeteredCall.abandon_async))

    def _plan_or_refusal(self, request: Mapping[str, Any], endpoint: str,
                         tags: Sequence[str], user: str | None, region: str | None,
                         url: Any) -> _Plan | QwenMeterError:
        try:
            return make_plan(self, request, endpoint, tags, user, region, url)
        except QwenMeterError as exc:
            return exc

    def _write_refusal(self, exc: QwenMeterError, request: Any, endpoint: str,
                       region: str | None, url: Any) -> steps.Step[None]:
        """Record a call refused while planning (before any hold was taken)."""
        if self.record_refused:
            model = request.get("model") if isinstance(request, Mapping) else None
            record = refused_record(exc, self, model=str(model) if model else "",
                                          endpoint=endpoint, region=self.region_of(url, region),
                                          plan=None)
            yield from self._write_steps(record, None)

    def _begin_steps(self, plan: _Plan) -> steps.Step[MeteredCall]:
        reservations: list[tuple[Budget, Reservation]] = []
        permit = None
        try:
            for budget, amount, key in plan.holds:
                reservations.append((budget, (yield steps.op(budget, "reserve", amount,
                                                             key=key))))
            if plan.limiter is not None:
                name = plan.resolved.spec.name if plan.resolved.listed else plan.model
                permit = yield steps.wait(plan.limiter, "acquire", name, plan.tokens,
                                        timeout=self.timeout, wait=self.wait)
        except BaseException as exc:
            for budget, reservation in reservations:
                try:
                    yield steps.op(budget, "release", reservation)
                except Exception as inner:  # the hold expires with its lease
                    log.warning("could not release %s: %s", budget.name, inner)
            if isinstance(exc, QwenMeterError):
                yield from self._refused_steps(exc, plan)
            raise
        call = MeteredCall(self, plan.resolved.spec, plan.model, plan.endpoint, plan.stream,
                           plan.enable_thinking, plan.prompt, plan.calibration, plan.estimate,
                           reservations, permit, plan.tokens, plan.started, plan.tags, plan.user,
                           plan.metadata, region=plan.region, shape=plan.shape,
                           limiter=plan.limiter, resolved=plan.resolved,
                           warnings=list(plan.warnings), max_tokens=plan.max_tokens,
                           request_params=plan.request_params or {})
        if self.log is not None:
            yield from self._intent_steps(call)
        return call

    def _announce(self, call: MeteredCall) -> MeteredCall:
        notify(self.observers, "on_begin", call)
        return call

    def _intent_steps(self, call: MeteredCall) -> steps.Step[None]:
        """Journal the call before it is sent (:mod:`.journal`): a process that dies before
        settling it leaves the intent, which the next meter on this log settles (``lost``)."""
        try:
            yield steps.op(self.log, "append_intent", intent_of(call))
        except Exception as exc:  # the call still goes; only a crash could not be recovered
            call.warnings.append(f"journal intent not written: {exc}")
            log.error("journal intent of call %s not written: %s", call.id, exc)
        except BaseException as exc:  # cancelled here: not sent, so free what it holds
            yield from call._fail_steps(exc, http_status=None, request_id=None,
                                        status="refused")
            raise

    def _refused_steps(self, exc: BaseException, plan: _Plan) -> steps.Step[None]:
        if self.record_refused:
            record = refused_record(exc, self, model=plan.model, endpoint=plan.endpoint,
                                          region=plan.region, plan=plan)
            yield from self._write_steps(record, None)

    def _write_steps(self, record: UsageRecord, call: MeteredCall | None
                     ) -> steps.Step[UsageRecord]:
        """Write a record; a log that fails loses nothing (ERROR log line with the JSON)."""
        if self.log is not None:
            try:
                yield steps.op(self.log, "append", record)
            except Exception as exc:
                record = replace(record, warnings=(*record.warnings,
                                                   f"usage log write failed: {exc}"))
                log.error("usage record not written to the log (%s): %s", exc,
                          record.to_json())
        if call is not None:
            call.record = record
            call.recorded.set()
        notify(self.observers, "on_record", record, call)
        return record

    # --- adapters ------------------------------------------------------------------------

    def wrap(self, client: Any) -> Any:
        """The same client, metered: ``openai.OpenAI`` / ``AsyncOpenAI``, ``dashscope.Generation``
        / ``AioGeneration`` / ``MultiModalConversation`` / ``AioMultiModalConversation`` /
        ``TextEmbedding``, or an ``httpx.Client`` / ``AsyncClient`` (httpx or httpx2)."""
        return client_adapters().wrap(self, client)

    def httpx_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.Client`` (for LangChain's ``http_client=`` and other SDKs)."""
        return client_adapters().metered_client(self, **kwargs)

    def httpx_async_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.AsyncClient``."""
        return client_adapters().metered_async_client(self, **kwargs)

    def close(self) -> None:
        """Settle the streams still open (``closed``, with what they received) and close
        the log."""
        self.streams.settle(everything=True)
        if self.log is not None:
            self.log.close()
