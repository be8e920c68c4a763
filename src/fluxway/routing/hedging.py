"""Hedged attempts: race a route's first target against later ones started after the hedge delay.

The delay is waited out with the executor's injected ``sleep`` (tests drive it on virtual time); the
first attempt to succeed wins and every other one still running is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fluxway.canonical import CanonicalRequest, Target, UpstreamError
from fluxway.config import HedgeConfig
from fluxway.routing.plan import hedge_delay_s
from fluxway.routing.stream import Leg

if TYPE_CHECKING:
    from fluxway.routing.executor import Executor, Route
    from fluxway.routing.health import Permit
    from fluxway.routing.outcome import Trace

log = logging.getLogger("fluxway.executor")

T = TypeVar("T")


async def hedged(
    ex: Executor,
    req: CanonicalRequest,
    r: Route,
    targets: list[Target],
    attempt: Callable[[CanonicalRequest, Route, Target, Permit, Trace], Awaitable[T]],
    trace: Trace,
    hedge: HedgeConfig,
) -> tuple[tuple[T] | None, int]:
    """Race the first target against later ones started after the hedge delay.

    Returns ((result,), targets used) for a success, or (None, targets used) when every started
    attempt failed (the caller goes on with the remaining targets); (None, 0) when there is no
    delay to hedge after yet (no set ``after_ms`` and too few latency samples).
    """
    delay = hedge_delay_s(hedge.after_ms, ex.board.target(targets[0].key))
    if delay is None:
        return None, 0
    pending: set[asyncio.Future[T]] = set()
    started: list[asyncio.Future[T]] = []
    used = 0
    extra = 0

    def launch() -> None:
        nonlocal used
        while used < len(targets):
            target = targets[used]
            used += 1
            permit = ex.acquire(target)
            if permit is not None:
                task = asyncio.ensure_future(ex.attempt_once(req, r, target, permit, attempt, trace, bool(started)))
                pending.add(task)
                started.append(task)
                return

    launch()
    timer: asyncio.Future[None] | None = None
    try:
        while pending:
            can_hedge = extra < hedge.max_extra and used < len(targets)
            timer = asyncio.ensure_future(ex.sleep(delay)) if can_hedge else None
            waiting: set[asyncio.Future[Any]] = set(pending)
            if timer is not None:
                waiting.add(timer)
            done_any, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            done = [t for t in pending if t in done_any]
            if timer is not None:
                timer.cancel()
                timer = None
            if not done:
                extra += 1
                ex.counters.hedges += 1
                log.info("hedging %s after %.0f ms", r.name, delay * 1000)
                launch()
                continue
            for task in done:
                pending.discard(task)
                exc = task.exception()
                if exc is None:
                    if task is not started[0]:
                        ex.counters.hedge_wins += 1
                    return (task.result(),), used
                if isinstance(exc, UpstreamError):
                    ex.after_failure(exc)
                else:
                    raise exc
        return None, used
    finally:
        if timer is not None:
            timer.cancel()
        for task in pending:
            task.cancel()
        for task in pending:
            try:
                res = await task
            except BaseException:
                continue
            if isinstance(res, Leg):  # a losing stream that opened anyway
                ex.board.release(res.permit)
                res.close()
                if res.span is not None:
                    res.span.cancel()
