"""Anomaly alerts through HTTP: a gateway in front of a fault-injected provider (issue 14: "an alert
fires and resolves on a fault-injected provider"), /admin/alerts, the alert metrics, a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.faults import FaultyUpstream
from tests.support.gateway import Gateway, run_gateway

MASTER = "sk-master-alerts"
ADMIN = {"authorization": f"Bearer {MASTER}"}
HI = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}


class FakeBus:
    """Stands in for the event sinks: what the alert engine emits."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Sequence[str] | None]] = []

    def emit(self, type: str, data: Mapping[str, Any], *, sinks: Sequence[str] | None = None) -> None:
        self.events.append((type, dict(data), sinks))


def gateway_config(url: str, alerts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "providers": [{"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": ["k"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}],
                    "retry": {"attempts": 1}}],
        # Breakers that never open here: every call reaches the (failing, then healthy) provider.
        "routing": {"breaker": {"failure_threshold": 1000, "min_volume": 1000}},
        "observability": {"alerting": {"interval_s": 0.1}},
        "alerts": alerts,
        **extra,
    }


async def call(http: aiohttp.ClientSession, gw: Gateway, n: int) -> list[int]:
    out = []
    for _ in range(n):
        async with http.post(gw.url + "/v1/chat/completions", json=HI, headers=ADMIN) as resp:
            await resp.read()
            out.append(resp.status)
    return out


async def admin_alerts(http: aiohttp.ClientSession, gw: Gateway, query: str = "") -> dict[str, Any]:
    async with http.get(gw.url + "/admin/alerts" + query, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def until(http: aiohttp.ClientSession, gw: Gateway, ok: Callable[[dict[str, Any]], bool],
                timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = await admin_alerts(http, gw)
        if ok(data):
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)


def state(data: dict[str, Any], rule: str, subject: str = "*") -> str | None:
    for r in data["rules"]:
        if r["name"] == rule:
            for s in r["subjects"]:
                if s["subject"] == subject:
                    return str(s["state"])
    return None


async def metrics(http: aiohttp.ClientSession, gw: Gateway) -> str:
    async with http.get(gw.url + "/metrics") as resp:
        return await resp.text()


async def test_error_rate_alert_fires_once_and_resolves_once_on_a_failing_provider() -> None:
    rule = {"name": "errors", "metric": "error_rate", "window": "2s", "above": 0.5, "min_requests": 3,
            "cooldown": "1h", "provider": "up"}
    async with FaultyUpstream("up") as up, run_gateway(gateway_config(up.url, [rule])) as gw, \
            aiohttp.ClientSession() as http:
        bus = FakeBus()
        gw.runtime.events = bus
        assert await call(http, gw, 3) == [200, 200, 200]
        await asyncio.sleep(0.3)
        data = await admin_alerts(http, gw)
        assert state(data, "errors") == "ok" and data["history"] == []

        await up.set_mode("500")
        assert set(await call(http, gw, 8)) == {502}
        data = await until(http, gw, lambda d: state(d, "errors") == "firing")
        [r] = data["rules"]
        assert r["metric"] == "error_rate" and r["above"] == 0.5 and r["firing"] == 1
        [s] = r["subjects"]
        assert s["value"] > 0.5 and s["threshold"] == 0.5 and s["since"].endswith("Z")
        await asyncio.sleep(0.4)  # several evaluations while it stays above: still one event
        assert [t for t, _, _ in bus.events] == ["alert.fired"]
        assert 'fluxway_alerts_firing{rule="errors"} 1' in await metrics(http, gw)

        await up.set_mode("ok")
        await asyncio.sleep(2.1)  # the failures leave the 2 s window
        assert set(await call(http, gw, 5)) == {200}
        data = await until(http, gw, lambda d: state(d, "errors") == "ok")
        assert [h["kind"] for h in data["history"]] == ["resolved", "fired"]
        fired = data["history"][1]
        assert fired["rule"] == "errors" and fired["subject"] == "*" and fired["value"] > 0.5
        assert [t for t, _, _ in bus.events] == ["alert.fired", "alert.resolved"]
        _, event, sinks = bus.events[0]
        assert sinks is None  # no notify: every sink
        assert event["rule"] == "errors" and event["filters"] == {"provider": "up"}

        # Failing again inside the cool-down (1 h): no new alert.
        await up.set_mode("500")
        await call(http, gw, 8)
        await asyncio.sleep(0.5)
        data = await admin_alerts(http, gw)
        assert state(data, "errors") == "ok" and len(data["history"]) == 2
        assert len(bus.events) == 2
        text = await metrics(http, gw)
        assert 'fluxway_alerts_firing{rule="errors"} 0' in text
        assert 'fluxway_alert_transitions_total{rule="errors",kind="fired"} 1' in text
        assert 'fluxway_alert_transitions_total{rule="errors",kind="resolved"} 1' in text


async def test_latency_and_spend_rules_fire_on_a_slow_expensive_provider() -> None:
    rules = [
        {"name": "slow", "metric": "latency_p95_ms", "window": "1m", "above": 200, "min_requests": 3,
         "model": "smart"},
        {"name": "spend", "metric": "spend_usd", "window": "1h", "above": 12, "per": "model"},
    ]
    cfg = gateway_config("", rules)
    async with FaultyUpstream("up", mode="slow", slow_s=0.3) as up:
        cfg["providers"][0]["base_url"] = up.url + "/v1"
        # 5 prompt + 3 completion tokens a call at $1 per token: $8 a call.
        cfg["models"][0]["targets"][0]["price"] = {"input_per_mtok": 1e6, "output_per_mtok": 1e6}
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            assert await call(http, gw, 1) == [200]
            await asyncio.sleep(0.3)
            data = await admin_alerts(http, gw)
            assert state(data, "slow") != "firing" and state(data, "spend", "model=smart") == "ok"
            assert await call(http, gw, 2) == [200, 200]
            data = await until(http, gw, lambda d: state(d, "slow") == "firing"
                               and state(d, "spend", "model=smart") == "firing")
            by_rule = {r["name"]: r for r in data["rules"]}
            assert by_rule["slow"]["subjects"][0]["value"] > 250
            assert by_rule["spend"]["subjects"][0]["value"] == 24.0
            assert {h["rule"] for h in data["history"]} == {"slow", "spend"}


async def test_admin_alerts_auth_pagination_errors_and_a_restart(tmp_path: Path) -> None:
    rule = {"name": "errors", "metric": "error_rate", "window": "1m", "above": 0.5, "min_requests": 2}
    store = {"url": f"sqlite:///{tmp_path}/gw.db"}
    async with FaultyUpstream("up", mode="503") as up, aiohttp.ClientSession() as http:
        async with run_gateway(gateway_config(up.url, [rule], store=store)) as gw:
            await call(http, gw, 3)
            await until(http, gw, lambda d: state(d, "errors") == "firing")
            async with http.get(gw.url + "/admin/alerts") as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"]
            async with http.get(gw.url + "/admin/alerts?cursor=abc", headers=ADMIN) as resp:
                assert resp.status == 400
                err = (await resp.json())["error"]
                assert err["param"] == "cursor" and err["type"] == "invalid_request_error"
            async with http.get(gw.url + "/admin/alerts?limit=0", headers=ADMIN) as resp:
                assert resp.status == 400
        # The same store after a restart: the history is still there; with no calls seen since,
        # the firing alert resolves once it is stale (window + 3 evaluations).
        up_rule = {**rule, "window": "1s"}
        async with run_gateway(gateway_config(up.url, [up_rule], store=store)) as gw:
            data = await admin_alerts(http, gw)
            assert [h["kind"] for h in data["history"]][-1] == "fired"
            data = await until(http, gw, lambda d: state(d, "errors") == "ok")
            assert [h["kind"] for h in data["history"]] == ["resolved", "fired"]
            page = await admin_alerts(http, gw, "?limit=1")
            assert [h["kind"] for h in page["history"]] == ["resolved"] and page["has_more"]
            rest = await admin_alerts(http, gw, f"?limit=1&cursor={page['next_cursor']}")
            assert [h["kind"] for h in rest["history"]] == ["fired"] and not rest["has_more"]
            assert (await admin_alerts(http, gw, "?rule=other"))["rules"] == []


async def test_without_alerts_the_runtime_has_no_engine() -> None:
    async with FaultyUpstream("up") as up, run_gateway(gateway_config(up.url, [])) as gw, \
            aiohttp.ClientSession() as http:
        assert gw.runtime.alerts is None
        assert await call(http, gw, 1) == [200]
        data = await admin_alerts(http, gw)
        assert data["rules"] == [] and data["history"] == []


async def test_alert_events_reach_the_webhook_sink_it_notifies(tmp_path: Path) -> None:
    """The alert engine and the event sinks together: fired and resolved, signed, to `notify`'s sink."""
    from tests.support.webhook_receiver import webhook_receiver

    rule = {"name": "errors", "metric": "error_rate", "window": "2s", "above": 0.5, "min_requests": 3,
            "notify": ["ops"]}
    sinks = [
        {"name": "ops", "type": "webhook", "url": "", "secret": "s3cret", "backoff_s": 0.05},
        {"name": "quiet", "type": "webhook", "url": "", "secret": "other", "backoff_s": 0.05},
    ]
    async with FaultyUpstream("up") as up, webhook_receiver() as ops, webhook_receiver("other") as quiet:
        sinks[0]["url"], sinks[1]["url"] = ops.url, quiet.url
        cfg = gateway_config(up.url, [rule], events=sinks, store={"url": f"sqlite:///{tmp_path}/f.db"},
                             usage={"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50})
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            await up.set_mode("500")
            await call(http, gw, 6)
            await until(http, gw, lambda d: state(d, "errors") == "firing")
            await up.set_mode("ok")
            await asyncio.sleep(2.1)
            await call(http, gw, 4)
            await until(http, gw, lambda d: state(d, "errors") == "ok")
            deadline = time.monotonic() + 10
            while not ops.of_type("alert.resolved") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    [fired], [resolved] = ops.of_type("alert.fired"), ops.of_type("alert.resolved")
    assert fired["data"]["rule"] == "errors" and resolved["data"]["rule"] == "errors"
    assert ops.bad_signatures == 0
    # Only the sink the rule notifies hears of it (usage events go to every sink).
    assert not quiet.of_type("alert.fired") and not quiet.of_type("alert.resolved") and quiet.of_type("usage")
