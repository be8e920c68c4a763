"""The outbox on a real store (SQLite, and PostgreSQL where instances share it): events stored once,
delivered in order and at least once, retried with backoff, refused ones dropped, the backlog capped
(oldest dropped, counted), delivered events pruned, and instances sharing PostgreSQL never each
delivering every event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from fluxway.config import parse
from fluxway.events.outbox import Outbox, SinkSettings, backoff
from fluxway.events.sinks import DeliveryError, Sent, Sink
from fluxway.observability.metrics import RequestStats
from fluxway.store import Store
from fluxway.store.outbox import Claimed


class ListSink:
    """Takes events into ``got``; fails the next ``fail`` sends (retryable unless ``refuse``)."""

    def __init__(self, name: str, fail: int = 0, refuse: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.refuse = refuse
        self.got: list[Claimed] = []
        self.tries = 0

    async def send(self, batch: Sequence[Claimed]) -> Sent:
        self.tries += 1
        if self.fail > 0:
            self.fail -= 1
            return Sent(0, DeliveryError("down", retryable=not self.refuse))
        self.got.extend(batch)
        return Sent(len(batch))

    async def close(self) -> None:
        pass


def sinks(*names: str, **extra: Any) -> tuple[SinkSettings, ...]:
    cfg = parse({"events": [{"name": n, "type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s",
                             "backoff_s": 0.01, "max_backoff_s": 0.05, **extra} for n in names]}, {})
    return cfg.events


def outbox(store: Store, settings: Sequence[SinkSettings], fakes: dict[str, ListSink], **kw: Any) -> Outbox:
    def factory(cfg: SinkSettings, _redis: str | None) -> Sink:
        return fakes[cfg.name]

    return Outbox(store.outbox, settings, RequestStats(), sink_factory=factory, **kw)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path}/fluxway.db")
    await store.upgrade()
    yield store
    await store.close()


async def until(cond: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_events_are_delivered_in_order_once_per_sink_with_their_body(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a"), "b": ListSink("b")}
    box = outbox(sqlite_store, sinks("a", "b"), fakes)
    await box.start()
    try:
        for i in range(250):
            box.emit("usage", {"n": i})
        box.emit("key.created", {"id": "k"}, sinks=["b", "unknown"])
        await until(lambda: len(fakes["a"].got) == 250 and len(fakes["b"].got) == 251)
        await box.maintain()
    finally:
        await box.close()
    assert [orjson.loads(e.body)["data"]["n"] for e in fakes["a"].got] == list(range(250))
    last = orjson.loads(fakes["b"].got[-1].body)
    assert last["type"] == "key.created" and last["data"] == {"id": "k"} and last["id"] == fakes["b"].got[-1].id
    assert last["time"].endswith("Z")
    assert len({e.id for e in fakes["b"].got}) == 251
    assert box.stats.sink_delivered == {"a": 250, "b": 251}
    assert box.stats.sink_backlog == {"a": 0, "b": 0} and box.stats.sink_lag_s == {"a": 0.0, "b": 0.0}


async def test_an_event_id_given_twice_is_stored_and_delivered_once(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a")}
    box = outbox(sqlite_store, sinks("a"), fakes)
    box.emit("budget.threshold", {"pct": 50}, id="budget:key:k:d:2026-12-07:50")
    await box.flush()
    box.emit("budget.threshold", {"pct": 50}, id="budget:key:k:d:2026-12-07:50")
    await box.flush()
    await box.start()
    try:
        await until(lambda: len(fakes["a"].got) == 1)
        await asyncio.sleep(0.2)
    finally:
        await box.close()
    assert [e.id for e in fakes["a"].got] == ["budget:key:k:d:2026-12-07:50"]


async def test_a_failing_sink_is_retried_with_backoff_keeping_the_event_id(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a", fail=3)}
    box = outbox(sqlite_store, sinks("a"), fakes)
    await box.start()
    try:
        box.emit("usage", {"n": 1})
        box.emit("usage", {"n": 2})
        await until(lambda: len(fakes["a"].got) == 2)
    finally:
        await box.close()
    assert fakes["a"].tries == 4
    assert [orjson.loads(e.body)["data"]["n"] for e in fakes["a"].got] == [1, 2]  # order kept across retries
    assert fakes["a"].got[0].attempts == 3  # the head event was tried three times before
    assert box.stats.sink_failed["a"] == 3 and box.stats.sink_delivered["a"] == 2


async def test_an_event_refused_for_good_is_dropped_and_counted_and_the_next_goes_on(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a", fail=1, refuse=True)}
    box = outbox(sqlite_store, sinks("a"), fakes)
    box.emit("usage", {"n": 1})
    await box.flush()
    box.emit("usage", {"n": 2})
    await box.flush()
    box.sinks = dict(fakes)
    assert await box.deliver_once("a") == (1, None)  # refused: dropped, no backoff
    assert await box.deliver_once("a") == (1, None)
    assert [orjson.loads(e.body)["data"]["n"] for e in fakes["a"].got] == [2]
    assert box.stats.sink_failed["a"] == 1


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    assert backoff(1, 1.0, 60.0, rand=lambda: 1.0) == 1.0
    assert backoff(3, 1.0, 60.0, rand=lambda: 1.0) == 4.0
    assert backoff(3, 1.0, 60.0, rand=lambda: 0.0) == 2.0
    assert backoff(40, 1.0, 60.0, rand=lambda: 1.0) == 60.0


async def test_a_backlog_over_its_cap_drops_the_oldest_and_counts_them(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a"), "b": ListSink("b")}
    settings = sinks("a", "b", max_backlog=10)
    box = outbox(sqlite_store, settings, fakes)
    for i in range(25):
        box.emit("usage", {"n": i})
    await box.flush()
    await box.maintain()
    assert box.stats.sink_dropped == {"a": 15, "b": 15}
    assert box.stats.sink_backlog == {"a": 10, "b": 10}
    assert box.stats.sink_lag_s["a"] >= 0.0
    box.sinks = dict(fakes)
    await box.deliver_once("a")
    assert [orjson.loads(e.body)["data"]["n"] for e in fakes["a"].got] == list(range(15, 25))  # the newest kept


async def test_events_outlive_a_restart_and_a_sink_outage(sqlite_store: Store) -> None:
    down = {"a": ListSink("a", fail=10**6)}
    box = outbox(sqlite_store, sinks("a"), down)
    await box.start()
    for i in range(5):
        box.emit("usage", {"n": i})
    await until(lambda: down["a"].tries >= 2)
    await box.close()
    box.emit("usage", {"n": 5})  # after close: stays queued in memory, lost with the process
    up = {"a": ListSink("a")}
    again = outbox(sqlite_store, sinks("a"), up)
    await again.start()
    try:
        await until(lambda: len(up["a"].got) == 5)
    finally:
        await again.close()
    assert [orjson.loads(e.body)["data"]["n"] for e in up["a"].got] == [0, 1, 2, 3, 4]


async def test_delivered_events_are_pruned_after_the_retention(sqlite_store: Store) -> None:
    fakes = {"a": ListSink("a")}
    box = outbox(sqlite_store, sinks("a"), fakes)
    box.sinks = dict(fakes)
    for i in range(3):
        box.emit("usage", {"n": i})
    await box.flush()
    await box.deliver_once("a")
    box.emit("usage", {"n": 3})  # not delivered: kept
    await box.flush()
    assert await sqlite_store.outbox.prune(0.0, box.names) == 0  # none old enough yet
    assert await sqlite_store.outbox.prune(10**12, box.names) == 3  # the undelivered one stays
    assert (await sqlite_store.outbox.backlog("a"))[0] == 1
    await box.deliver_once("a")
    assert [orjson.loads(e.body)["data"]["n"] for e in fakes["a"].got] == [0, 1, 2, 3]


async def test_instances_sharing_postgresql_deliver_each_event_once(clean_postgres_url: str) -> None:
    stores = [Store.open(clean_postgres_url) for _ in range(3)]
    await stores[0].upgrade()
    got: list[ListSink] = []
    boxes = []
    for s in stores:
        fake = ListSink("a")
        got.append(fake)
        boxes.append(outbox(s, sinks("a", batch_size=7), {"a": fake}))
    try:
        for b in boxes:
            await b.start()
        for i in range(300):
            boxes[i % 3].emit("usage", {"n": i})
        await until(lambda: sum(len(f.got) for f in got) >= 300, timeout=30)
        await asyncio.sleep(1.0)  # any double delivery would show up by now
    finally:
        for b in boxes:
            await b.close()
        for s in stores:
            await s.close()
    ids = [e.id for f in got for e in f.got]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert sum(1 for f in got if f.got) >= 2  # the work was shared, not all on one instance
