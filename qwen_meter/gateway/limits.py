"""A virtual key's RPM / TPM in front of the DashScope account's own per-model limits.

The meter takes one limiter; a tenant needs two checks: its key's limits (all models together,
a plain per-minute quota, so no per-second smoothing) and, optionally, the real account's
per-model limits from the catalogue (smoothed, as DashScope enforces them). Both live in the
shared store, so every replica counts against the same windows.
"""

from __future__ import annotations

from ..limits.limiter.core import RateLimiter
from ..limits.limiter.values import Permit, RateLimit
from ..limits.store import Store

ALL_MODELS = "*"


class TenantLimiter(RateLimiter):
    """The key's window (model ``*``) first, then ``account`` for the model; one permit."""

    def __init__(self, store: Store, key_name: str, limit: RateLimit,
                 account: RateLimiter | None = None, region: str | None = None, *,
                 on_store_error: str = "closed") -> None:
        # ``region`` is the tenant's: a meter that sees it as this limiter's home region uses
        # it as is, rather than building a plain per-model sibling for another region.
        super().__init__(store, account=f"gateway-key:{key_name}", limits={ALL_MODELS: limit},
                         smooth=False, region=region, on_store_error=on_store_error)
        self.account_limiter = account
        self._held: dict[int, Permit] = {}  # account permit id -> the key's permit

    def acquire(self, model: str, tokens: int = 0, *, timeout: float | None = None,
                wait: bool = True) -> Permit:
        own = super().acquire(ALL_MODELS, tokens, timeout=timeout, wait=wait)
        return self._pair(own, model, tokens, timeout, wait)

    async def acquire_async(self, model: str, tokens: int = 0, *,
                            timeout: float | None = None, wait: bool = True) -> Permit:
        own = await super().acquire_async(ALL_MODELS, tokens, timeout=timeout, wait=wait)
        if self.account_limiter is None:
            return own
        try:
            permit = await self.account_limiter.acquire_async(model, tokens, timeout=timeout,
                                                              wait=wait)
        except BaseException:
            super().release(own)
            raise
        self._held[permit.id] = own
        return permit

    def _pair(self, own: Permit, model: str, tokens: int, timeout: float | None,
              wait: bool) -> Permit:
        if self.account_limiter is None:
            return own
        try:
            permit = self.account_limiter.acquire(model, tokens, timeout=timeout, wait=wait)
        except BaseException:
            super().release(own)
            raise
        self._held[permit.id] = own
        return permit

    def reconcile(self, permit: Permit, total_tokens: int) -> Permit:
        own = self._held.pop(permit.id, None)
        if own is None:
            return super().reconcile(permit, total_tokens)
        super().reconcile(own, total_tokens)
        assert self.account_limiter is not None
        return self.account_limiter.reconcile(permit, total_tokens)

    def release(self, permit: Permit) -> None:
        own = self._held.pop(permit.id, None)
        if own is None:
            super().release(permit)
            return
        super().release(own)
        assert self.account_limiter is not None
        self.account_limiter.release(permit)
