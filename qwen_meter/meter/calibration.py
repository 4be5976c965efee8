"""Calibration: learning the constant gap between local prompt counts and the server's.

:meth:`Meter.begin <qwen_meter.meter.pipeline.Meter.begin>` adds the learned offset of the
request's shape (:func:`request_shape`) to its prompt estimate; settlement of a call with usage
from the server feeds the observed gap back (:meth:`Calibration.observe`).
"""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict, deque
from collections.abc import Hashable, Mapping
from typing import Any

from ..base.errors import CalibrationWarning


class Calibration:
    """Learns a constant gap between local prompt counts and the server's, per request shape.

    The shape is (model, system message present, thinking, tools): a server template that adds
    a default system message only when there is none, or an empty think block only in thinking
    mode, gives different gaps for different shapes. A gap seen ``window`` times in a row for
    one shape is applied to later estimates of that shape; any other gap resets it. An applied
    offset never takes an estimate below zero.
    """

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._seen: dict[Hashable, deque[int]] = defaultdict(lambda: deque(maxlen=window))
        self._offsets: dict[Hashable, int] = {}
        self._warned: set[Hashable] = set()
        self._lock = threading.Lock()

    def offset(self, shape: Hashable) -> int:
        return self._offsets.get(shape, 0)

    def observe(self, shape: Hashable, diff: int) -> None:
        with self._lock:
            seen = self._seen[shape]
            seen.append(diff)
            if diff and shape not in self._warned:
                self._warned.add(shape)
                name = shape[0] if isinstance(shape, tuple) else shape
                warnings.warn(f"{name}: the server counted {diff:+d} prompt tokens against "
                              "qwen_meter's count (stale catalogue template or tokenizer?)",
                              CalibrationWarning, stacklevel=4)
            if len(seen) == self.window and len(set(seen)) == 1:
                self._offsets[shape] = seen[0]


def request_shape(model: str, request: Mapping[str, Any], thinking: bool) -> tuple[Any, ...]:
    """(model, system message present, thinking, tools present): what calibration keys on."""
    messages = request.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    role = first.get("role") if isinstance(first, Mapping) else getattr(first, "role", None)
    return model, role == "system", thinking, bool(request.get("tools"))
