"""The memory store's windows against a plain statement of the rule (base.py), on random
operation sequences: one or two keys under one lock stripe (the limiter's case, which the
store runs as straight-line code), keys in different stripes, and three keys at once."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_meter.limits.store import MemoryStore, WindowCheck

# "{m}" tags share a stripe; "{n}" is another one; "plain" is untagged.
KEYS = ("rl:{m}:req", "rl:{m}:tok", "rl:{n}:tok", "plain")


class Spec:
    """The window rule written out directly: clamp the second up to the newest one used on
    those keys, check the current second (per-second limit) and the last 61 seconds, then
    add to every key or to none."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[int, int]] = defaultdict(dict)
        self.latest: dict[str, int] = {}

    def window(self, key: str, second: int) -> list[int]:
        return [self.buckets[key].get(s, 0) for s in range(second - 60, second + 1)]

    def acquire(self, checks: list[WindowCheck], second: int) -> tuple[bool, int, str | None,
                                                                        int]:
        second = max([second, *(self.latest.get(c.key, second) for c in checks)])
        for check in checks:
            self.latest[check.key] = second
        for check in checks:
            values = self.window(check.key, second)
            if check.per_second is not None and values[-1] > 0 \
                    and values[-1] + check.amount > check.per_second:
                return False, 1, check.key, second
            if sum(values) + check.amount > check.limit:
                for wait in range(1, 61):
                    if sum(values[wait:]) + check.amount <= check.limit:
                        return False, wait, check.key, second
                return False, 61, check.key, second
        for check in checks:
            buckets = self.buckets[check.key]
            buckets[second] = buckets.get(second, 0) + check.amount
        return True, 0, None, second

    def adjust(self, key: str, second: int, delta: int) -> None:
        buckets = self.buckets[key]
        if second in buckets:
            buckets[second] = max(buckets[second] + delta, 0)

    def total(self, key: str, second: int) -> int:
        self.latest[key] = max(self.latest.get(key, second), second)
        return sum(self.window(key, self.latest[key]))


def check_on(keys: st.SearchStrategy[str]) -> st.SearchStrategy[WindowCheck]:
    return st.builds(WindowCheck, keys, st.integers(1, 40), st.integers(0, 15),
                     st.one_of(st.none(), st.integers(1, 20)))


seconds = st.one_of(st.integers(1000, 1004), st.integers(1000, 1100))  # near ones: clamps
# The limiter's own shape (requests + tokens of one model) most of the time.
limiter_pair = st.tuples(check_on(st.just(KEYS[0])), check_on(st.just(KEYS[1]))).map(list)
any_checks = st.lists(check_on(st.sampled_from(KEYS)), min_size=1, max_size=3)
operations = st.lists(st.one_of(
    st.tuples(st.just("acquire"), limiter_pair, seconds),
    st.tuples(st.just("acquire"), any_checks, seconds),
    st.tuples(st.just("adjust"), st.sampled_from(KEYS), seconds, st.integers(-20, 20)),
    st.tuples(st.just("sum"), st.sampled_from(KEYS), seconds),
), min_size=5, max_size=80)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_memory_windows_follow_the_rule(ops):
    store, spec = MemoryStore(), Spec()
    for op in ops:
        if op[0] == "acquire":
            _, checks, second = op
            got = store.window_acquire(checks, second)
            assert (got.ok, got.retry_buckets, got.refused_key, got.bucket) \
                == spec.acquire(checks, second)
        elif op[0] == "adjust":
            _, key, second, delta = op
            store.window_adjust(key, second, delta)
            spec.adjust(key, second, delta)
        else:
            _, key, second = op
            assert store.window_sum(key, second) == spec.total(key, second)


def test_a_clock_read_is_clamped_to_the_newest_second():
    store = MemoryStore()
    pair = [WindowCheck(KEYS[0], 10, 1), WindowCheck(KEYS[1], 100, 5)]
    assert store.window_acquire(pair, lambda: 2000.7).bucket == 2000
    late = store.window_acquire(pair, lambda: 1999.2)  # a stale or stepped-back clock
    assert late.ok and late.bucket == 2000 and late.now == 1999.2
    assert store.window_sum(KEYS[1], 1990) == 10
