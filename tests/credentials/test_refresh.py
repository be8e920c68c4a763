"""The shared cache: refreshed ahead of expiry, one refresh at a time, the held value kept on failure."""

from __future__ import annotations

import asyncio

import pytest

from fluxway.canonical import ErrorKind, UpstreamError
from fluxway.credentials.refresh import Expiring, Refresher


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_refreshes_five_minutes_before_expiry() -> None:
    clock = Clock()
    fetched: list[float] = []

    async def fetch() -> Expiring[str]:
        fetched.append(clock.now)
        return Expiring(f"token-{len(fetched)}", clock.now + 3600)

    r = Refresher(fetch, clock=clock)
    assert await r.get() == "token-1"
    clock.now += 3600 - 301
    assert await r.get() == "token-1"  # still outside the early window
    clock.now += 2
    assert await r.get() == "token-2"  # 299 s before expiry: refreshed
    assert len(fetched) == 2


async def test_short_lived_values_refresh_at_half_their_life() -> None:
    clock = Clock()
    n = 0

    async def fetch() -> Expiring[int]:
        nonlocal n
        n += 1
        return Expiring(n, clock.now + 100)

    r = Refresher(fetch, clock=clock)
    assert await r.get() == 1
    clock.now += 49
    assert await r.get() == 1
    clock.now += 2
    assert await r.get() == 2


async def test_concurrent_callers_share_one_refresh() -> None:
    clock = Clock()
    started = 0
    gate = asyncio.Event()

    async def fetch() -> Expiring[str]:
        nonlocal started
        started += 1
        await gate.wait()
        return Expiring("shared", clock.now + 3600)

    r = Refresher(fetch, clock=clock)
    waiters = [asyncio.create_task(r.get()) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*waiters) == ["shared"] * 20
    assert started == 1


async def test_a_failed_refresh_serves_the_held_value_until_it_expires() -> None:
    clock = Clock()
    fail = False

    async def fetch() -> Expiring[str]:
        if fail:
            raise UpstreamError(ErrorKind.UPSTREAM_5XX, "token endpoint down")
        return Expiring("old", clock.now + 3600)

    r = Refresher(fetch, clock=clock)
    assert await r.get() == "old"
    fail = True
    clock.now += 3400  # in the early window: a refresh is tried and fails
    assert await r.get() == "old"
    clock.now += 300  # expired
    with pytest.raises(UpstreamError, match="token endpoint down"):
        await r.get()


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh() -> None:
    clock = Clock()
    gate = asyncio.Event()
    calls = 0

    async def fetch() -> Expiring[str]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return Expiring("v", clock.now + 3600)

    r = Refresher(fetch, clock=clock)
    first = asyncio.create_task(r.get())
    second = asyncio.create_task(r.get())
    await asyncio.sleep(0.01)
    first.cancel()
    gate.set()
    assert await second == "v"
    assert calls == 1
