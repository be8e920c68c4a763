"""Usage queries wait for the records still pending, within ``usage.query_flush_wait_ms``: past it
they answer from the store while the flush goes on, uncut."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from fluxway.api.admin_queries import flush_usage


class SlowUsage:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.finished = False

    async def flush(self) -> int:
        await asyncio.sleep(self.seconds)
        self.finished = True
        return 1


def governance(usage: Any, wait_ms: float) -> Any:
    return SimpleNamespace(usage=usage, cfg=SimpleNamespace(usage=SimpleNamespace(query_flush_wait_ms=wait_ms)))


def test_a_quick_flush_is_waited_for() -> None:
    usage = SlowUsage(0.01)
    asyncio.run(flush_usage(governance(usage, 5000)))
    assert usage.finished


def test_a_slow_flush_is_waited_for_at_most_the_setting_and_goes_on() -> None:
    async def run() -> tuple[float, bool, bool]:
        usage = SlowUsage(0.5)
        started = time.monotonic()
        await flush_usage(governance(usage, 50))
        waited, done_then = time.monotonic() - started, usage.finished
        await asyncio.sleep(0.7)
        return waited, done_then, usage.finished

    waited, done_then, done_later = asyncio.run(run())
    assert not done_then and done_later  # answered before the flush ended; the flush was not cancelled
    assert waited < 0.5


def test_a_failing_flush_does_not_fail_the_query() -> None:
    class Broken:
        async def flush(self) -> int:
            raise OSError("store down")

    asyncio.run(flush_usage(governance(Broken(), 500)))
