"""Invariants of the limiter under threads and clock jumps, on every store (memory, SQLite,
Redis, Redis Cluster): a Hypothesis state machine drives bursts of concurrent callers while the
clock moves forward and back, and checks what the callers saw against the store."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import qwen_meter as qm
from qwen_meter.limits.limiter.core import RateLimiter

RPM, TPM = 7, 900


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.3

    def __call__(self) -> float:
        return self.now


def worst_window(counts: Counter[int]) -> int:
    """The largest sum over any 61 consecutive buckets."""
    if not counts:
        return 0
    return max(sum(v for b, v in counts.items() if start <= b <= start + 60)
               for start in {b - 60 for b in counts} | set(counts))


class LimiterMachine(RuleBasedStateMachine):
    store_factory = None  # set per store below

    @initialize(smooth=st.booleans())
    def start(self, smooth: bool) -> None:
        self.clock = Clock()
        self.store = type(self).store_factory()
        self.limiter = RateLimiter(self.store, account=uuid.uuid4().hex,
                                   limits={"m": (RPM, TPM)}, smooth=smooth, clock=self.clock)
        self.requests: Counter[int] = Counter()
        self.tokens: Counter[int] = Counter()
        self.held: list[qm.Permit] = []
        self.mark = -(2**40)  # the store has seen no second yet

    @rule(seconds=st.floats(-90, 90).filter(lambda s: abs(s) > 1e-3))
    def move_clock(self, seconds: float) -> None:
        self.clock.now += seconds  # forward or back: NTP steps, VM pauses, manual changes

    @rule(sizes=st.lists(st.integers(0, 400), min_size=1, max_size=8))
    def burst(self, sizes: list[int]) -> None:
        """One thread per request, all released at once."""
        barrier = threading.Barrier(len(sizes))
        got: list[qm.Permit] = []
        lock = threading.Lock()

        def call(tokens: int) -> None:
            barrier.wait()
            try:
                permit = self.limiter.try_acquire("m", tokens)
            except qm.RateLimited as exc:
                assert exc.retry_after > 0
                return
            with lock:
                got.append(permit)

        threads = [threading.Thread(target=call, args=(n,)) for n in sizes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.mark = max(self.mark, int(self.clock.now // 1))
        for permit in got:
            assert not permit.degraded
            self.requests[permit.bucket] += 1
            self.tokens[permit.bucket] += permit.tokens
            self.held.append(permit)

    @rule(index=st.integers(0, 1000), release=st.booleans(), fraction=st.floats(0, 1))
    def settle_one(self, index: int, release: bool, fraction: float) -> None:
        # Which permits exist depends on thread timing, so draw nothing that depends on it.
        if not self.held:
            return
        permit = self.held.pop(index % len(self.held))
        if release:
            self.limiter.release(permit)
            self.requests[permit.bucket] -= 1
            self.tokens[permit.bucket] -= permit.tokens
        else:  # the call used fewer tokens than reserved
            used = int(permit.tokens * fraction)
            self.limiter.reconcile(permit, used)
            self.tokens[permit.bucket] -= permit.tokens - used

    @invariant()
    def never_over_the_limits(self) -> None:
        if hasattr(self, "requests"):
            assert worst_window(self.requests) <= RPM
            assert worst_window(self.tokens) <= TPM

    @invariant()
    def store_matches_what_callers_saw(self) -> None:
        if not hasattr(self, "requests") or not self.requests:
            return
        # The store's window ends at the newest second it has been asked about (the clamp).
        end = self.mark = max(self.mark, int(self.clock.now // 1))
        seen = sum(v for b, v in self.requests.items() if end - 60 <= b <= end)
        seen_tokens = sum(v for b, v in self.tokens.items() if end - 60 <= b <= end)
        assert self.limiter.usage("m") == (seen, seen_tokens)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()


@pytest.mark.parametrize("examples", [1])
def test_state_machine_on_every_store(make_store, store_kind, examples):
    memory = store_kind == "memory"

    class Machine(LimiterMachine):
        store_factory = staticmethod(make_store)

    Machine.TestCase.settings = settings(
        max_examples=60 if memory else 12, stateful_step_count=25 if memory else 14,
        deadline=None, suppress_health_check=list(HealthCheck))
    # make_store hands back one store (same data) per call: give each run fresh keys instead.
    Machine.TestCase().runTest()
