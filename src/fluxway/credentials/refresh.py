"""The one cache every credential flow uses: a value with an expiry, refreshed before it expires.

:class:`Refresher` calls its ``fetch`` only when the value it holds is missing or within the early
window of its expiry; concurrent callers then share that one fetch (its result or its failure). A
failed refresh while the held value has not yet expired keeps serving the held value (the next call
tries again). Time comes from the injected ``clock`` (wall-clock seconds: token expiries are
absolute times).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("fluxway.credentials")

# Refresh this long before expiry (or half the lifetime, for a shorter-lived value).
EARLY_S = 300.0


@dataclass(frozen=True, slots=True)
class Expiring(Generic[T]):
    """A credential and when it stops working (POSIX seconds)."""

    value: T
    expires_at: float


class Refresher(Generic[T]):
    """Holds one :class:`Expiring` value; :meth:`get` refreshes it ahead of its expiry."""

    __slots__ = ("_clock", "_early", "_fetch", "_held", "_inflight", "_refresh_at")

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Expiring[T]]],
        *,
        clock: Callable[[], float] = time.time,
        early_s: float = EARLY_S,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._early = early_s
        self._held: Expiring[T] | None = None
        self._refresh_at = 0.0
        self._inflight: asyncio.Future[Expiring[T]] | None = None

    async def get(self) -> T:
        held = self._held
        now = self._clock()
        if held is not None and now < self._refresh_at:
            return held.value
        try:
            fresh = await self._shared_fetch()
        except Exception:
            if held is not None and now < held.expires_at:
                log.warning("credential refresh failed; the current one is valid for %.0fs more",
                            held.expires_at - now, exc_info=True)
                return held.value
            raise
        return fresh.value

    def _shared_fetch(self) -> asyncio.Future[Expiring[T]]:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._run())
            self._inflight.add_done_callback(_retrieve)
        return asyncio.shield(self._inflight)

    async def _run(self) -> Expiring[T]:
        try:
            fresh = await self._fetch()
            now = self._clock()
            self._held = fresh
            self._refresh_at = fresh.expires_at - min(self._early, max(0.0, fresh.expires_at - now) / 2)
            return fresh
        finally:
            self._inflight = None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a shared fetch's failure as seen (every waiter may have been cancelled)."""
    if not fut.cancelled():
        fut.exception()
