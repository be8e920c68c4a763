"""Each sink against a real server: the webhook's signature and retry rules (aiohttp receiver),
Redis Streams (the shared redis-server), NATS (a private nats-server)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from fluxway.config import parse
from fluxway.events.outbox import Outbox
from fluxway.events.sinks import create_sink
from fluxway.events.sinks.webhook import signature
from fluxway.observability.metrics import RequestStats
from fluxway.store import Store
from fluxway.store.outbox import Claimed
from tests.events.test_outbox import until
from tests.support.nats_server import nats_server
from tests.support.webhook_receiver import webhook_receiver


def ev(i: int, body: dict[str, Any] | None = None) -> Claimed:
    data = body or {"n": i}
    return Claimed(i, f"ev{i}", "usage", orjson.dumps({"id": f"ev{i}", "type": "usage", "data": data}).decode(), 0, 0.0)


class Inbox:
    def __init__(self) -> None:
        self.got: list[Any] = []

    async def add(self, msg: Any) -> None:
        self.got.append(msg)


def sink_cfg(entry: dict[str, Any], redis_url: str | None = None) -> Any:
    cfg = parse({"events": [{"name": "s", **entry}], **({"redis": {"url": redis_url}} if redis_url else {})}, {})
    return cfg.events[0]


def test_the_signature_is_the_hmac_sha256_of_the_raw_body() -> None:
    # RFC 4231, test case 2
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


async def test_webhook_posts_the_signed_body_with_the_event_id_and_headers() -> None:
    async with webhook_receiver("k3y") as rx:
        sink = create_sink(sink_cfg({"type": "webhook", "url": rx.url, "secret": "k3y",
                                     "headers": {"authorization": "Bearer t"}}), None)
        try:
            sent = await sink.send([ev(1), ev(2)])
        finally:
            await sink.close()
        assert sent.delivered == 2 and sent.error is None
        assert rx.bad_signatures == 0 and list(rx.events) == ["ev1", "ev2"]
        req = rx.up.requests[0]
        assert req.headers["x-fluxway-event-id"] == "ev1" and req.headers["authorization"] == "Bearer t"
        assert req.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (408, True), (429, True),
                                                   (400, False), (404, False), (410, False)])
async def test_webhook_retries_5xx_408_429_but_not_other_4xx(status: int, retryable: bool) -> None:
    async with webhook_receiver(fail_first=1, fail=status) as rx:
        sink = create_sink(sink_cfg({"type": "webhook", "url": rx.url, "secret": "s3cret"}), None)
        try:
            sent = await sink.send([ev(1), ev(2)])
        finally:
            await sink.close()
        assert sent.delivered == 0 and sent.error is not None
        assert sent.error.retryable is retryable and str(status) in str(sent.error)
        assert rx.attempts == ["ev1"]  # stopped at the failure: order kept


async def test_webhook_connection_refused_and_timeouts_are_retryable() -> None:
    sink = create_sink(sink_cfg({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s"}), None)
    try:
        sent = await sink.send([ev(1)])
    finally:
        await sink.close()
    assert sent.error is not None and sent.error.retryable


async def test_redis_stream_sink_xadds_each_event(clean_redis_url: str) -> None:
    import redis.asyncio as aioredis

    stream = f"fluxway.test.{uuid.uuid4().hex[:8]}"
    sink = create_sink(sink_cfg({"type": "redis_stream", "stream": stream, "maxlen": 1000}, clean_redis_url),
                       clean_redis_url)
    client = aioredis.Redis.from_url(clean_redis_url)
    try:
        sent = await sink.send([ev(i) for i in range(5)])
        entries = await client.xrange(stream)
    finally:
        await sink.close()
        await client.delete(stream)
        await client.aclose()
    assert sent.delivered == 5 and sent.error is None
    assert [e[1][b"id"] for e in entries] == [f"ev{i}".encode() for i in range(5)]
    assert orjson.loads(entries[3][1][b"event"])["data"] == {"n": 3} and entries[0][1][b"type"] == b"usage"


async def test_redis_stream_sink_down_is_a_retryable_failure() -> None:
    sink = create_sink(sink_cfg({"type": "redis_stream", "stream": "x"}, "redis://127.0.0.1:9/0"),
                       "redis://127.0.0.1:9/0")
    try:
        sent = await sink.send([ev(1)])
    finally:
        await sink.close()
    assert sent.delivered == 0 and sent.error is not None and sent.error.retryable


async def test_nats_sink_publishes_each_event_with_its_id_and_recovers_after_an_outage() -> None:
    import nats

    with nats_server() as url:
        nc = await nats.connect(url)
        inbox = Inbox()
        got = inbox.got
        sub = await nc.subscribe("fluxway.events", cb=inbox.add)
        sink = create_sink(sink_cfg({"type": "nats", "url": url, "subject": "fluxway.events"}), None)
        try:
            sent = await sink.send([ev(i) for i in range(3)])
            await until(lambda: len(got) == 3)
        finally:
            await sink.close()
            await sub.unsubscribe()
            await nc.close()
    assert sent.delivered == 3
    assert [orjson.loads(m.data)["id"] for m in got] == ["ev0", "ev1", "ev2"]
    assert got[0].headers["Nats-Msg-Id"] == "ev0"
    # The server gone: a retryable failure, not an exception.
    sink = create_sink(sink_cfg({"type": "nats", "url": url, "subject": "fluxway.events"}), None)
    try:
        sent = await sink.send([ev(9)])
    finally:
        await sink.close()
    assert sent.error is not None and sent.error.retryable


async def test_outbox_to_real_redis_and_nats_sinks(tmp_path: Path, clean_redis_url: str) -> None:
    import nats
    import redis.asyncio as aioredis

    stream = f"fluxway.test.{uuid.uuid4().hex[:8]}"
    store = Store.open(f"sqlite:///{tmp_path}/fluxway.db")
    await store.upgrade()
    with nats_server() as url:
        nc = await nats.connect(url)
        inbox = Inbox()
        got = inbox.got
        sub = await nc.subscribe("ev", cb=inbox.add)
        cfg = parse({"redis": {"url": clean_redis_url}, "events": [
            {"name": "bus", "type": "redis_stream", "stream": stream},
            {"name": "nats", "type": "nats", "url": url, "subject": "ev"},
        ]}, {})
        box = Outbox(store.outbox, cfg.events, RequestStats(), redis_url=clean_redis_url)
        client = aioredis.Redis.from_url(clean_redis_url)
        await box.start()
        try:
            for i in range(50):
                box.emit("usage", {"n": i})
            box.emit("alert.fired", {"rule": "errors"}, sinks=["nats"])
            await until(lambda: len(got) == 51)
            await until(lambda: box.stats.sink_delivered["bus"] == 50)
            entries = await client.xrange(stream)
        finally:
            await box.close()
            await sub.unsubscribe()
            await nc.close()
            await client.delete(stream)
            await client.aclose()
            await store.close()
    assert len(entries) == 50 and orjson.loads(got[-1].data)["type"] == "alert.fired"
