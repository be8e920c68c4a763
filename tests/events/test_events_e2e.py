"""Events through the whole gateway (HTTP in, real sinks out): a key created and revoked over the
admin API, calls' usage, budget thresholds, a breaker opening on a failing provider; the webhook's
signed, retried deliveries, de-duplicated by event id across a gateway restart; Redis Streams and
NATS fed by the same calls; /metrics counting per sink."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from fluxway.events.outbox import Outbox
from tests.events.test_outbox import until
from tests.events.test_sinks import Inbox
from tests.support.gateway import run_gateway
from tests.support.nats_server import nats_server
from tests.support.openai_upstream import openai_upstream
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream
from tests.support.webhook_receiver import webhook_receiver

MASTER = "sk-master-events"
HI = [{"role": "user", "content": "Hi"}]
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # $0.001 a token: a call (9 + 3) is $0.012


def config(ok_url: str, down_url: str, tmp_path: Path, sinks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [
            {"name": "up", "type": "openai", "base_url": ok_url + "/v1", "api_keys": ["sk-a"]},
            {"name": "down", "type": "openai", "base_url": down_url + "/v1", "api_keys": ["sk-d"]},
        ],
        "models": [
            {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini", "price": PRICE}]},
            {"name": "flaky", "retry": {"attempts": 1},
             "targets": [{"provider": "down", "model": "m-down", "price": PRICE}]},
        ],
        "routing": {"breaker": {"failure_threshold": 2, "open_cooldown_s": 300}},
        "events": sinks,
        **extra,
    }


def hook(url: str, secret: str = "s3cret") -> dict[str, Any]:
    return {"name": "ops", "type": "webhook", "url": url, "secret": secret, "backoff_s": 0.05, "max_backoff_s": 0.2}


async def broken(request: Any) -> Any:
    return json_reply({"error": {"message": "boom", "type": "server_error"}}, status=500)


async def call(http: aiohttp.ClientSession, url: str, key: str, model: str = "smart") -> int:
    body = {"model": model, "messages": HI, "max_tokens": 3}
    async with http.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r:
        await r.read()
        return r.status


async def admin(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers={"authorization": f"Bearer {MASTER}"}) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def test_keys_usage_budget_and_breaker_events_reach_a_signed_retried_webhook(tmp_path: Path) -> None:
    async with (
        openai_upstream() as up,
        FakeUpstream() as down,
        webhook_receiver(fail_first=2) as rx,
        aiohttp.ClientSession() as http,
    ):
        down.route("POST", "/v1/chat/completions", broken)
        async with run_gateway(config(up.url, down.url, tmp_path, [hook(rx.url)])) as gw:
            key = await admin(http, "POST", gw.url + "/admin/keys",
                              {"name": "k", "team": None, "budget": {"amount_usd": 0.03, "period": "monthly"}})
            await until(lambda: rx.of_type("key.created"))
            for _ in range(2):  # $0.024 of $0.03: 50 and 80 % crossed, on the second call
                assert await call(http, gw.url, key["key"]) == 200
            assert await call(http, gw.url, key["key"]) in (200, 429)  # 80 % again: no second event
            for _ in range(2):
                assert await call(http, gw.url, MASTER, "flaky") >= 500

            def served() -> list[dict[str, Any]]:
                return [u["data"] for u in rx.of_type("usage") if u["data"]["key"] == key["id"]
                        and u["data"]["status"] == 200]

            await until(lambda: len(served()) == 2 and rx.of_type("breaker.opened")
                        and len([u for u in rx.of_type("usage") if u["data"]["model"] == "flaky"]) == 2)
            await until(lambda: {e["data"]["threshold_pct"] for e in rx.of_type("budget.threshold")} >= {50, 80})
            await admin(http, "DELETE", gw.url + f"/admin/keys/{key['id']}")
            await until(lambda: rx.of_type("key.revoked"))
            box = gw.runtime.events
            assert isinstance(box, Outbox)
            for _ in range(200):  # the last delivery's row is deleted just after the receiver answered
                await box.maintain()
                if box.stats.sink_backlog["ops"] == 0:
                    break
                await asyncio.sleep(0.02)
            async with http.get(gw.url + "/metrics") as r:
                metrics = await r.text()

    assert rx.bad_signatures == 0 and rx.duplicates == 0
    assert len(rx.attempts) == len(rx.events) + 2  # the first two deliveries failed and were retried
    assert rx.attempts[0] == rx.attempts[1] == rx.attempts[2]  # the same event, retried under its id
    created = rx.of_type("key.created")[0]["data"]
    assert created["id"] == key["id"] and created["name"] == "k"
    assert key["key"] not in orjson.dumps(list(rx.events.values())).decode()  # never the secret
    assert rx.of_type("key.revoked")[0]["data"]["revoked_at"] is not None
    usage = rx.of_type("usage")
    ours = [u["data"] for u in usage if u["data"]["key"] == key["id"] and u["data"]["status"] == 200]
    assert len(ours) == 2
    assert ours[0]["model"] == "smart" and ours[0]["provider"] == "up"
    assert ours[0]["prompt_tokens"] == 9 and ours[0]["completion_tokens"] == 3
    assert abs(ours[0]["cost_usd"] - 0.012) < 1e-9 and ours[0]["latency_ms"] > 0
    assert all(u["data"]["status"] == 502 for u in usage if u["data"]["model"] == "flaky")
    thresholds = Counter(e["data"]["threshold_pct"] for e in rx.of_type("budget.threshold"))
    assert thresholds[50] == 1 and thresholds[80] == 1 and set(thresholds) <= {50, 80, 100}  # once per period
    t50 = next(e["data"] for e in rx.of_type("budget.threshold") if e["data"]["threshold_pct"] == 50)
    assert t50["scope"] == "key" and t50["key"] == key["id"] and t50["budget_usd"] == 0.03
    opened = rx.of_type("breaker.opened")
    assert [e["data"]["target"] for e in opened] == ["down/m-down"] and opened[0]["data"]["provider"] == "down"
    assert f'fluxway_event_sink_delivered_total{{sink="ops"}} {len(rx.events)}' in metrics
    assert 'fluxway_event_sink_failed_total{sink="ops"} 2' in metrics
    assert 'fluxway_event_sink_dropped_total{sink="ops"} 0' in metrics
    assert 'fluxway_event_sink_backlog{sink="ops"} 0' in metrics


async def test_events_survive_a_gateway_restart_and_are_deduplicated_by_id(tmp_path: Path) -> None:
    async with (
        openai_upstream() as up,
        FakeUpstream() as down,
        webhook_receiver(fail_first=10**6) as rx,  # the receiver is failing while the first gateway runs
        aiohttp.ClientSession() as http,
    ):
        cfg = config(up.url, down.url, tmp_path, [hook(rx.url)])
        async with run_gateway(cfg) as gw:
            key = await admin(http, "POST", gw.url + "/admin/keys", {"name": "survivor"})
            assert await call(http, gw.url, key["key"]) == 200
            await until(lambda: len(rx.attempts) >= 2)  # tried, refused, retried
        assert rx.events == {}
        tried = set(rx.attempts)
        rx.fail_first = len(rx.attempts)  # the receiver recovers
        async with run_gateway(cfg):
            await until(lambda: rx.of_type("key.created") and rx.of_type("usage"))
    assert rx.of_type("key.created")[0]["data"]["id"] == key["id"]
    assert rx.of_type("usage")[0]["data"]["key"] == key["id"]
    assert tried <= set(rx.events)  # what the first gateway tried is what the second delivered, by id
    assert rx.bad_signatures == 0 and rx.duplicates == 0
    assert Counter(rx.attempts)[rx.of_type("key.created")[0]["id"]] >= 2  # the same id before and after


async def test_a_call_reaches_redis_streams_and_nats_through_the_gateway(tmp_path: Path, clean_redis_url: str) -> None:
    import nats
    import redis.asyncio as aioredis

    stream = f"fluxway.test.{uuid.uuid4().hex[:8]}"
    with nats_server() as nats_url:
        nc = await nats.connect(nats_url)
        inbox = Inbox()
        sub = await nc.subscribe("fluxway.events", cb=inbox.add)
        client = aioredis.Redis.from_url(clean_redis_url)
        try:
            async with openai_upstream() as up, FakeUpstream() as down, aiohttp.ClientSession() as http:
                sinks = [{"name": "bus", "type": "redis_stream", "stream": stream},
                         {"name": "nats", "type": "nats", "url": nats_url, "subject": "fluxway.events"}]
                cfg = config(up.url, down.url, tmp_path, sinks, redis={"url": clean_redis_url})
                async with run_gateway(cfg) as gw:
                    assert await call(http, gw.url, MASTER) == 200
                    await until(lambda: inbox.got)

                    async def in_stream() -> list[Any]:
                        return list(await client.xrange(stream))

                    entries: list[Any] = []
                    for _ in range(250):
                        entries = await in_stream()
                        if entries:
                            break
                        await asyncio.sleep(0.02)
        finally:
            await sub.unsubscribe()
            await nc.close()
            await client.delete(stream)
            await client.aclose()
    from_nats = orjson.loads(inbox.got[0].data)
    from_redis = orjson.loads(entries[0][1][b"event"])
    assert from_nats == from_redis and from_nats["type"] == "usage" and from_nats["data"]["model"] == "smart"
    assert entries[0][1][b"id"].decode() == from_nats["id"] == inbox.got[0].headers["Nats-Msg-Id"]


async def test_a_gateway_without_sinks_has_no_event_bus(tmp_path: Path) -> None:
    async with openai_upstream() as up, FakeUpstream() as down:
        cfg = config(up.url, down.url, tmp_path, [])
        async with run_gateway(cfg) as gw:
            assert gw.runtime.events is None
            assert gw.runtime.executor.board.on_transition is None
            assert gw.runtime.governance.usage.events is None
