"""/metrics and /admin/providers through HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from fluxway.canonical import CanonicalResponse
from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit
from fluxway.policy.limits import MemoryLimiter, RateLimitHook
from fluxway.routing.health import DEFAULT_MAX_DYNAMIC
from tests.support.exposition import Exposition, parse
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_upstream import COMPLETION, chat_handler, config, openai_upstream
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "fluxway-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
HI = [{"role": "user", "content": "hi"}]


async def test_metrics_count_requests_and_show_targets() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        for _ in range(3):
            await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope-x", messages=[{"role": "user", "content": "hi"}])
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert 'fluxway_requests_total{ingress="openai",model="smart",status="200"} 3' in text
    assert 'fluxway_requests_total{ingress="openai",model="(none)",status="404"} 1' in text
    assert 'fluxway_tokens_total{model="smart",kind="prompt"} 27' in text
    assert "fluxway_upstream_attempts_total 3" in text
    assert 'fluxway_target_breaker_state{target="up/gpt-4o-mini"} 0' in text


async def test_admin_providers_needs_admin_and_shows_breakers() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url, auth={"master_key": "sk-m"})) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
        await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.url + "/admin/providers") as resp:
                assert resp.status == 401
            async with http.get(gw.url + "/admin/providers", headers={"authorization": "Bearer sk-m"}) as resp:
                assert resp.status == 200
                data: Any = await resp.json()
            async with http.get(gw.url + "/health/ready") as resp:
                assert resp.status == 200
    assert data["providers"][0] == {"name": "up", "type": "openai", "keys": 2, "health_check": False}
    assert data["targets"]["up/gpt-4o-mini"]["state"] == "closed"


async def test_client_chosen_names_never_grow_state_or_metrics() -> None:
    """Issue 9 item 8: thousands of direct names stay out of /metrics and the board stays bounded."""
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw, aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def call(i: int) -> int:
            body = {"model": f"up/bogus-{i}", "messages": [{"role": "user", "content": "hi"}]}
            async with sem, http.post(gw.url + "/v1/chat/completions", json=body) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*[call(i) for i in range(1100)])
        assert set(statuses) == {200}
        board = gw.runtime.executor.board
        assert board.dynamic_targets == DEFAULT_MAX_DYNAMIC
        async with http.get(gw.url + "/metrics") as resp:
            text = await resp.text()
    assert "bogus" not in text
    assert 'fluxway_requests_total{ingress="openai",model="(direct)",status="200"} 1100' in text
    assert 'fluxway_target_breaker_state{target="up/gpt-4o-mini"} 0' in text


async def test_metrics_token_guards_the_scrape() -> None:
    async with openai_upstream() as up:
        cfg = config(up.url, auth={"master_key": "sk-m"}, observability={"metrics": {"token": "scrape-me"}})
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            for headers, status in [
                ({}, 401),
                ({"authorization": "Bearer wrong"}, 401),
                ({"authorization": "Bearer scrape-me"}, 200),
                ({"authorization": "Bearer sk-m"}, 200),  # an admin key may scrape too
            ]:
                async with http.get(gw.url + "/metrics", headers=headers) as resp:
                    assert resp.status == status, headers
                    if status == 401:
                        body: Any = await resp.json()
                        assert body["error"]["code"] == "unauthorized"
                    else:
                        assert "fluxway_requests_total" in await resp.text()
        # Open mode (no master key): a made-up bearer is not an admin key.
        cfg = config(up.url, observability={"metrics": {"token": "scrape-me"}})
        async with (
            run_gateway(cfg) as gw,
            aiohttp.ClientSession() as http,
            http.get(gw.url + "/metrics", headers={"authorization": "Bearer anything"}) as resp,
        ):
            assert resp.status == 401


# -- the full set of metrics ---------------------------------------------------------------------


async def scrape(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def check_histograms(exp: Exposition) -> None:
    """Every histogram series: buckets cumulative, ending in +Inf, which equals its _count."""
    for family, kind in exp.types.items():
        if kind != "histogram":
            continue
        series: dict[str, list[float]] = {}
        for name, v in exp.samples.items():
            if name.startswith(family + "_bucket{"):
                labels = re.sub(r',?le="[^"]*"', "", name[len(family) + len("_bucket"):])
                series.setdefault("" if labels == "{}" else labels, []).append(v)
        for labels, counts in series.items():
            assert counts == sorted(counts), (family, labels)
            count = exp.value(f"{family}_count{labels}")
            assert counts[-1] == count, (family, labels)


def failing_first_config(ok_url: str, down_url: str) -> dict[str, Any]:
    """Model ``smart``: provider ``down`` (always 500) first, then ``up``; priced, retried once."""
    return {
        "providers": [
            {"name": "down", "type": "openai", "base_url": down_url + "/v1", "api_keys": ["sk-d"]},
            {"name": "up", "type": "openai", "base_url": ok_url + "/v1", "api_keys": ["sk-a"]},
        ],
        "models": [{
            "name": "smart",
            "strategy": "fallback",
            "retry": {"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 1},
            "targets": [
                {"provider": "down", "model": "m-down"},
                {"provider": "up", "model": "gpt-4o-mini", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            ],
        }],
        "routing": {"breaker": {"failure_threshold": 100, "min_volume": 100}},
    }


async def test_metrics_by_model_provider_status_with_retries_failovers_tokens_and_cost() -> None:
    async def broken(request: Any) -> Any:
        return json_reply({"error": {"message": "boom", "type": "server_error"}}, status=500)

    async with (
        openai_upstream() as up,
        FakeUpstream() as down,
    ):
        down.route("POST", "/v1/chat/completions", broken)
        async with run_gateway(failing_first_config(up.url, down.url)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            for _ in range(2):
                await client.chat.completions.create(model="smart", messages=HI)
            stream = await client.chat.completions.create(
                model="smart", messages=HI, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                pass
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="made-up-by-a-client", messages=HI)
            text = await scrape(gw)
    exp = parse(text)
    check_histograms(exp)
    assert "made-up-by-a-client" not in text
    ok = 'ingress="openai",endpoint="chat",model="smart",provider="up",status="200"'
    assert exp.value(f"fluxway_request_duration_seconds_count{{{ok}}}") == 3
    assert exp.value(f'fluxway_request_duration_seconds_bucket{{{ok},le="+Inf"}}') == 3
    assert exp.value(f"fluxway_request_duration_seconds_sum{{{ok}}}") > 0
    unknown = 'ingress="openai",endpoint="chat",model="(none)",provider="(none)",status="404"'
    assert exp.value(f"fluxway_request_duration_seconds_count{{{unknown}}}") == 1
    assert exp.value('fluxway_requests_total{ingress="openai",model="smart",status="200"}') == 3
    # Each call: down, down again (a retry), then up (a failover).
    assert exp.value("fluxway_upstream_attempts_total") == 9
    assert exp.value("fluxway_upstream_failures_total") == 6
    assert exp.value("fluxway_retries_total") == 3
    assert exp.value("fluxway_failovers_total") == 3
    assert exp.value("fluxway_hedges_total") == 0
    # The stream's time to first token; the gateway's own overhead for every answered call.
    assert exp.value('fluxway_time_to_first_token_seconds_count{endpoint="chat",model="smart",provider="up"}') == 1
    assert exp.value('fluxway_overhead_seconds_count{ingress="openai",model="smart"}') == 3
    assert exp.value('fluxway_overhead_seconds_bucket{ingress="openai",model="smart",le="0.0001"}') >= 0
    # Tokens: 9 in and 3 out per call, at 1 and 2 USD per million.
    assert exp.value('fluxway_tokens_total{model="smart",kind="prompt"}') == 27
    assert exp.value('fluxway_tokens_total{model="smart",kind="completion"}') == 9
    assert exp.value('fluxway_cost_usd_total{model="smart",provider="up"}') == pytest.approx(3 * 15e-6)
    genai = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="smart"'
    assert exp.value(f'gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type="input"}}') == 27
    assert exp.value(f'gen_ai_client_token_usage_sum{{{genai},gen_ai_token_type="output"}}') == 9
    assert exp.value(f'gen_ai_client_token_usage_bucket{{{genai},gen_ai_token_type="input",le="16.0"}}') == 3
    assert exp.value(f'gen_ai_client_token_usage_bucket{{{genai},gen_ai_token_type="input",le="4.0"}}') == 0
    assert exp.value(f"gen_ai_server_request_duration_seconds_count{{{genai}}}") == 3
    assert exp.value(f"gen_ai_server_time_to_first_token_seconds_count{{{genai}}}") == 1
    none = 'gen_ai_operation_name="chat",gen_ai_provider_name="(none)",gen_ai_request_model="(none)"'
    assert exp.value(f'gen_ai_server_request_duration_seconds_count{{{none},error_type="404"}}') == 1
    assert exp.value('fluxway_target_breaker_state{target="down/m-down"}') == 0
    assert exp.value('fluxway_target_breaker_state{target="up/gpt-4o-mini"}') == 0
    assert exp.value("fluxway_in_flight") == 0


class CallerIs:
    """Stands in for the key store: every caller is key ``k`` with an rpm of 1."""

    name = "test-keys"

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        ctx.principal = Principal(id="k", limits=[{"scope": "key:k", "rpm": 1, "tpm": None}])
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None


class CacheStandIn:
    """Answers calls saying "cached" itself, as the response cache will on a hit."""

    name = "cache"

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        if ctx.request.body["messages"][0]["content"] == "cached":
            return ShortCircuit(CanonicalResponse(dict(COMPLETION)))
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None


async def test_limit_rejections_and_cache_hits_are_counted() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw:
        gw.runtime.pipeline.replace([CallerIs(), CacheStandIn(), RateLimitHook(MemoryLimiter())])
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        await client.chat.completions.create(model="smart", messages=HI)
        for _ in range(2):
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="smart", messages=HI)
        cached = [{"role": "user", "content": "cached"}]
        await client.chat.completions.create(model="smart", messages=cached)
        exp = parse(await scrape(gw))
    assert exp.value('fluxway_rejections_total{reason="rate_limit"}') == 2
    assert exp.value('fluxway_rejections_total{reason="budget"}') == 0
    assert exp.value('fluxway_cache_hits_total{model="smart"}') == 1
    hit = 'ingress="openai",endpoint="chat",model="smart",provider="(cache)",status="200"'
    assert exp.value(f"fluxway_request_duration_seconds_count{{{hit}}}") == 1
    limited = 'ingress="openai",endpoint="chat",model="smart",provider="(none)",status="429"'
    assert exp.value(f"fluxway_request_duration_seconds_count{{{limited}}}") == 2
    # Families the guardrails and event sinks (to come) fill are there, empty, already.
    for family in ("fluxway_guardrail_actions_total", "fluxway_event_sink_lag_seconds", "fluxway_event_sink_backlog"):
        assert family in exp.types
    assert not [s for s in exp.samples if s.startswith("fluxway_guardrail_actions_total")]


async def test_guardrail_and_event_sink_numbers_render_with_their_labels() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw:
        stats = gw.runtime.stats
        stats.guardrail_actions[("pii", "redact")] += 2
        stats.sink_lag_s["ops-webhook"] = 1.5
        stats.sink_backlog["ops-webhook"] = 7
        exp = parse(await scrape(gw))
    assert exp.value('fluxway_guardrail_actions_total{guardrail="pii",action="redact"}') == 2
    assert exp.value('fluxway_event_sink_lag_seconds{sink="ops-webhook"}') == 1.5
    assert exp.value('fluxway_event_sink_backlog{sink="ops-webhook"}') == 7


# -- the exposition checked by promtool, the dashboard and the docs against it --------------------


async def live_exposition(redis_url: str | None = None) -> str:
    """An exposition with every kind of series in it: JSON and stream calls, an error, traces;
    with ``redis_url``, Redis's families too."""
    from tests.support.otlp_receiver import otlp_receiver

    extra: dict[str, Any] = {"redis": {"url": redis_url}} if redis_url else {}
    async with FakeUpstream() as up, otlp_receiver() as rec:
        extra["observability"] = {"otlp": {"endpoint": rec.url, "flush_interval_ms": 50}}
        up.route("POST", "/v1/chat/completions", chat_handler)
        alerts = [{"name": "errors", "metric": "error_rate", "window": "1m", "above": 0.5}]
        async with run_gateway(config(up.url, auth={"master_key": "sk-m"}, alerts=alerts, **extra)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
            await client.chat.completions.create(model="smart", messages=HI)
            stream = await client.chat.completions.create(model="smart", messages=HI, stream=True)
            async for _ in stream:
                pass
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="nope", messages=HI)
            gw.runtime.stats.guardrail_actions[("pii", "block")] += 1
            gw.runtime.stats.sink_lag_s["hook"] = 0.0
            gw.runtime.stats.sink_backlog["hook"] = 0
            async with (
                aiohttp.ClientSession() as http,
                http.get(gw.url + "/metrics", headers={"authorization": "Bearer sk-m"}) as resp,
            ):
                return await resp.text()


async def test_exposition_passes_promtool_check_metrics(clean_redis_url: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (scripts/services.sh installs Debian's prometheus package)")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    text = await live_exposition(clean_redis_url)
    assert "fluxway_redis_up 1" in text
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert not done.stdout.strip() and not done.stderr.strip(), done.stdout.decode() + done.stderr.decode()


_FUNCTIONS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "max", "min", "avg", "count",
    "topk", "bottomk", "clamp_min", "clamp_max", "le", "on", "ignoring", "group_left", "group_right", "or",
    "and", "unless", "delta", "deriv", "abs", "vector", "time", "label_replace", "sort_desc", "offset",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, strings, durations and functions dropped)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?", "", expr)  # numbers (1e-9, 0.95, 3600)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in _FUNCTIONS and not n.startswith("$")}


async def test_grafana_dashboard_reads_only_metrics_the_gateway_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exp = parse(await live_exposition())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    assert len(panels) >= 10
    read: set[str] = set()
    for panel in panels:
        assert panel.get("title"), panel
        targets = panel.get("targets") or []
        assert targets, panel["title"]
        for target in targets:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            for name in names:
                assert exp.family_of(name) is not None, (panel["title"], name)
            read |= {exp.family_of(n) or n for n in names}
    # The list: every one of these is on the dashboard.
    for family in (
        "fluxway_request_duration_seconds", "fluxway_time_to_first_token_seconds", "fluxway_overhead_seconds",
        "gen_ai_client_token_usage", "fluxway_cost_usd_total", "fluxway_in_flight", "fluxway_retries_total",
        "fluxway_hedges_total", "fluxway_failovers_total", "fluxway_target_breaker_state",
        "fluxway_rejections_total", "fluxway_cache_hits_total", "fluxway_guardrail_actions_total",
        "fluxway_event_sink_lag_seconds",
    ):
        assert family in read, family


async def test_metrics_doc_lists_every_family_with_its_type_and_help(clean_redis_url: str) -> None:
    exp = parse(await live_exposition(clean_redis_url))
    rows = {}
    for line in METRICS_DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z_:]+)` \| (\w+) \| ([^|]*) \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(4).strip())
    assert set(rows) == set(exp.types)
    for name, kind in exp.types.items():
        assert rows[name] == (kind, exp.helps[name]), name
