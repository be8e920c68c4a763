"""The outbox: the :class:`~fluxway.events.bus.EventBus` a gateway with sinks runs.

``emit()`` appends to an in-memory queue (no await, no I/O). A writer task stores the queue in
batches in the store's outbox (``event_outbox`` + one ``event_deliveries`` row per sink); one
dispatcher per sink claims its due rows oldest first, delivers them, deletes what was delivered and
backs off (exponential, with jitter, capped) when the sink fails. So an event survives a restart and
a sink outage and is delivered at least once, with the same event id each time. A maintenance task
keeps each sink's backlog under ``max_backlog`` (dropping the oldest, counted), refreshes the lag
and backlog gauges, and prunes events every sink has taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from fluxway.events.settings import NatsSink, RedisStreamSink, WebhookSink
from fluxway.events.sinks import Sink, create_sink
from fluxway.observability.metrics import RequestStats
from fluxway.store.outbox import NewEvent, OutboxStore

log = logging.getLogger("fluxway.events")

SinkSettings = WebhookSink | RedisStreamSink | NatsSink
Queued = tuple[str, str, float, Mapping[str, Any], Sequence[str] | None]  # id, type, time, data, sinks

MAX_QUEUE = 100_000  # events waiting in memory for the writer at most (past it: dropped, counted)
FLUSH_INTERVAL_S = 0.05
WRITE_BATCH = 1000
LEASE_S = 60.0  # a claim lapses after this (a crashed instance's rows go to another)
POLL_S = 0.5  # a dispatcher looks for rows other instances stored at least this often
STOP_WAIT_S = 5.0  # at shutdown, a delivery in progress gets this long to finish
MAINTAIN_S = 1.0
PRUNE_EVERY_S = 60.0
RETAIN_DELIVERED_S = 3600.0  # delivered events are kept this long, then pruned


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt`` (1 = the first): base * 2^(attempt-1), capped, full jitter
    over its upper half (so retries of several instances spread out)."""
    d = min(cap, base * (2.0 ** min(attempt - 1, 30)))
    return d * (0.5 + 0.5 * rand())


class Outbox:
    """Emit, store, deliver. Start with :meth:`start`, stop with :meth:`close` (stores what is queued)."""

    def __init__(
        self,
        store: OutboxStore,
        sinks: Sequence[SinkSettings],
        stats: RequestStats,
        *,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
        sink_factory: Callable[[SinkSettings, str | None], Sink] = create_sink,
        retain_delivered_s: float = RETAIN_DELIVERED_S,
    ) -> None:
        self.store = store
        self.settings = {s.name: s for s in sinks}
        self.names: tuple[str, ...] = tuple(self.settings)
        self.stats = stats
        self._clock = clock
        self._redis_url = redis_url
        self._factory = sink_factory
        self._retain = retain_delivered_s
        self.sinks: dict[str, Sink] = {}
        self._queue: deque[Queued] = deque()
        self._wake = asyncio.Event()
        self._ready: dict[str, asyncio.Event] = {n: asyncio.Event() for n in self.names}
        self._tasks: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._prefix = os.urandom(6).hex()  # event ids: unique per process, then a counter
        self._ids = itertools.count(1)
        self.owner = os.urandom(8).hex()  # this instance's claims
        self.stored = 0
        for n in self.names:
            stats.sink_backlog.setdefault(n, 0)
            stats.sink_lag_s.setdefault(n, 0.0)
            stats.sink_delivered.setdefault(n, 0)
            stats.sink_failed.setdefault(n, 0)
            stats.sink_dropped.setdefault(n, 0)

    # the producers' side ---------------------------------------------------------------------

    def emit(
        self, type: str, data: Mapping[str, Any], *, sinks: Sequence[str] | None = None, id: str | None = None
    ) -> None:
        """Queue one event (``id``: a stable id of the producer's, for events it may emit twice)."""
        q = self._queue
        if len(q) >= MAX_QUEUE:
            for n in self.names if sinks is None else sinks:
                if n in self.settings:
                    self.stats.sink_dropped[n] += 1
            return
        q.append((id or f"{self._prefix}{next(self._ids):x}", type, self._clock(), data, sinks))
        if len(q) >= WRITE_BATCH:
            self._wake.set()

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for name, cfg in self.settings.items():
            self.sinks[name] = self._factory(cfg, self._redis_url)
        self._writer = asyncio.create_task(self._write_loop(), name="fluxway-events-writer")
        for name in self.names:
            self._tasks.append(asyncio.create_task(self._dispatch_loop(name), name=f"fluxway-events-{name}"))
        self._tasks.append(asyncio.create_task(self._maintain_loop(), name="fluxway-events-maintenance"))
        log.info("events: delivering to %s", ", ".join(self.names))

    async def close(self) -> None:
        """Stop delivering (between rounds, never inside one), give up this instance's claims, and
        store what is still queued: it is delivered after the next start."""
        self._stopping = True
        self._stop.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)
            for t in late:  # a delivery hanging on its sink: its claims are released below
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._tasks.clear()
        if self._writer is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        try:
            await self.flush()
            await self.store.release_owner(self.owner)
        except Exception as exc:
            log.error("events: the store is unavailable at shutdown (%d queued events lost): %s",
                      len(self._queue), exc)
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by :meth:`close`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # writing ---------------------------------------------------------------------------------

    def _body(self, item: Queued) -> NewEvent:
        eid, type_, ts, data, sinks = item
        when = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = orjson.dumps({"id": eid, "type": type_, "time": when, "data": data},
                            option=orjson.OPT_NON_STR_KEYS, default=str).decode()
        targets = self.names if sinks is None else tuple(n for n in sinks if n in self.settings)
        return eid, type_, ts, body, targets

    async def flush(self) -> int:
        """Store every queued event (batches of :data:`WRITE_BATCH`); returns events stored."""
        stored = 0
        q = self._queue
        while q:
            n = min(len(q), WRITE_BATCH)
            items = [q.popleft() for _ in range(n)]
            try:
                rows = [self._body(it) for it in items]
                added = await self.store.append(rows)
            except BaseException:
                q.extendleft(reversed(items))  # kept, in order, for the next try
                raise
            stored += n
            self.stored += n
            for sink in added:
                ev = self._ready.get(sink)
                if ev is not None:
                    ev.set()
        return stored

    async def _write_loop(self) -> None:
        delay = FLUSH_INTERVAL_S
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
                delay = FLUSH_INTERVAL_S
            except Exception as exc:
                delay = min(max(delay * 2, 0.5), 10.0)
                log.warning("events: cannot store %d events yet (retrying in %.1fs): %s", len(self._queue), delay, exc)

    # delivering ------------------------------------------------------------------------------

    async def deliver_once(self, name: str) -> tuple[int, float | None]:
        """One round for one sink: claim, send, settle. Returns (events handled, seconds to back off)."""
        cfg = self.settings[name]
        sink = self.sinks[name]
        now = self._clock()
        batch, due_at = await self.store.claim(name, self.owner, now, LEASE_S, cfg.batch_size)
        if not batch:
            return 0, (None if due_at is None else min(POLL_S, max(0.0, due_at - now)))
        try:
            sent = await sink.send(batch)
        except Exception as exc:  # a sink bug must not stop delivery: treat as a retryable failure
            from fluxway.events.sinks.base import DeliveryError, Sent

            log.exception("events: sink %s failed unexpectedly", name)
            sent = Sent(0, DeliveryError(str(exc)))
        done = [ev.seq for ev in batch[: sent.delivered]]
        self.stats.sink_delivered[name] += len(done)
        err = sent.error
        pause: float | None = None
        rest = batch[sent.delivered:]
        if err is not None and rest:
            head, rest = rest[0], rest[1:]
            self.stats.sink_failed[name] += 1
            if err.retryable:
                pause = backoff(head.attempts + 1, cfg.backoff_s, cfg.max_backoff_s)
                await self.store.failed(name, head.seq, self._clock() + pause)
                log.warning("events: delivery of %s to %s failed (try %d, next in %.1fs): %s",
                            head.id, name, head.attempts + 1, pause, err)
            else:
                done.append(head.seq)  # refused for good: not retried
                log.error("events: %s refused event %s for good: %s", name, head.id, err)
        await self.store.delivered(name, done)
        await self.store.release(name, [ev.seq for ev in rest], self.owner)
        return len(done), pause

    async def _dispatch_loop(self, name: str) -> None:
        ready = self._ready[name]
        while not self._stopping:
            try:
                handled, pause = await self.deliver_once(name)
            except Exception as exc:
                log.warning("events: sink %s: the outbox is unavailable: %s", name, exc)
                handled, pause = 0, 2.0
            if self._stopping:
                return
            if pause is not None:
                await self._pause(pause)
                continue
            if handled:
                continue  # more may be waiting
            ready.clear()
            waiter = asyncio.ensure_future(ready.wait())
            stopper = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait((waiter, stopper), timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    # maintenance -----------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Trim each sink's backlog to its cap and refresh the backlog and lag gauges."""
        stats = self.stats
        for name, cfg in self.settings.items():
            waiting, oldest = await self.store.backlog(name)
            if waiting > cfg.max_backlog:
                dropped = await self.store.trim(name, cfg.max_backlog, waiting)
                if dropped:
                    stats.sink_dropped[name] += dropped
                    log.warning("events: sink %s is %d events behind (max_backlog %d): dropped the oldest %d",
                                name, waiting, cfg.max_backlog, dropped)
                waiting, oldest = await self.store.backlog(name)
            stats.sink_backlog[name] = waiting
            stats.sink_lag_s[name] = 0.0 if oldest is None else round(max(0.0, self._clock() - oldest), 3)

    async def _maintain_loop(self) -> None:
        last_prune = 0.0
        while not self._stopping:
            await self._pause(MAINTAIN_S)
            if self._stopping:
                return
            try:
                await self.maintain()
                now = self._clock()
                if now - last_prune >= PRUNE_EVERY_S:
                    last_prune = now
                    while await self.store.prune(now - self._retain, self.names) >= 1000:
                        await asyncio.sleep(0)
            except Exception as exc:
                log.warning("events: outbox maintenance failed: %s", exc)


async def start_outbox(
    store: OutboxStore, sinks: Sequence[SinkSettings], stats: RequestStats, redis_url: str | None
) -> Outbox:
    box = Outbox(store, sinks, stats, redis_url=redis_url)
    await box.start()
    return box
