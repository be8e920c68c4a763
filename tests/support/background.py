"""Run an async context manager (a gateway, a fake upstream) on its own event loop in a thread, for
synchronous tests such as hypothesis properties that talk to it over plain sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def in_background(factory: Callable[[], AbstractAsyncContextManager[T]], timeout: float = 30.0) -> Iterator[T]:
    """Enter ``factory()`` on a private loop in a daemon thread; yield what it yields; exit it on close."""
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()
    box: dict[str, object] = {}

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with factory() as value:
                box["value"] = value
                ready.set()
                await stop.wait()
        except BaseException as exc:  # surfaced to the caller below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(timeout):
        raise RuntimeError("background service did not start")
    if "error" in box:
        raise RuntimeError("background service failed to start") from box["error"]  # type: ignore[arg-type]
    try:
        yield box["value"]  # type: ignore[misc]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        loop.close()
