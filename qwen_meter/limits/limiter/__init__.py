"""The rate limiter: RPM + TPM per (account, model), shared through a store.

:class:`RateLimiter` (in :mod:`.core`) is the limiter itself; :class:`RateLimit` and
:class:`Permit` (:mod:`.values`) are what it is configured with and what it hands out. Its
helpers: :mod:`.plans` (a model's limits, window keys and checks), :mod:`.checks` (argument
checks) and :mod:`.gates` (first come, first served waiting).
"""

from __future__ import annotations

from .checks import FAIL_POLICIES
from .core import RateLimiter
from .values import Permit, RateLimit

__all__ = ["FAIL_POLICIES", "Permit", "RateLimit", "RateLimiter"]
