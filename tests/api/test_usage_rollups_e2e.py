"""End to end: usage rollups behind /admin/usage, tags from x-fluxway-tags, /v1/me and /v1/me/usage."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from fluxway.policy.governance import Governance
from fluxway.store.tables import usage_records
from tests.store import dbs
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import completion
from tests.support.replies import replying
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-rollups"
HI = [{"role": "user", "content": "Hi"}]
GROUPS = ("key", "team", "model", "provider", "tag", "status", "day", "hour")
db_url = dbs.db_url


def config(up: FakeUpstream, tmp_path: Path, store_url: str, minute_hours: float = 48.0) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": store_url},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50, "minute_rollups_hours": minute_hours},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [
            {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
            {"name": "cheap", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
        ],
    }


async def call(base: str, method: str, path: str, key: str = MASTER, body: Any = None,
               headers: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {key}", **(headers or {})}) as s,
        s.request(method, base + path, json=body, params=params) as r,
    ):
        return r.status, await r.json()


def _label(group: str, rec: dict[str, Any]) -> list[Any]:
    import time

    if group == "tag":
        return (rec["tags"] or "").split(",") if rec["tags"] else [None]
    if group in ("day", "hour"):
        fmt = "%Y-%m-%d" if group == "day" else "%Y-%m-%dT%H:00:00Z"
        return [time.strftime(fmt, time.gmtime(int(rec["created_at"])))]
    return [rec[{"key": "key_id"}.get(group, group)]]


def raw_totals(records: list[dict[str, Any]], group: str, since: float | None = None,
               until: float | None = None) -> dict[Any, dict[str, float]]:
    """The reference: totals computed straight from the records."""
    out: dict[Any, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        if (since is not None and r["created_at"] < since) or (until is not None and r["created_at"] >= until):
            continue
        for g in _label(group, r):
            t = out[g]
            t["requests"] += 1
            t["errors"] += r["status"] >= 400
            t["prompt_tokens"] += r["prompt_tokens"]
            t["completion_tokens"] += r["completion_tokens"]
            t["cost_usd"] += r["cost_usd"]
    return out


def assert_matches(data: list[dict[str, Any]], group: str, expected: dict[Any, dict[str, float]]) -> None:
    got = {d[group]: d for d in data}
    assert set(got) == set(expected), (group, set(got), set(expected))
    for g, t in expected.items():
        for m in ("requests", "errors", "prompt_tokens", "completion_tokens"):
            assert got[g][m] == t[m], (group, g, m)
        assert got[g]["cost_usd"] == pytest.approx(t["cost_usd"], rel=1e-9, abs=1e-12)


async def _records(gov: Governance) -> list[dict[str, Any]]:
    await gov.usage.flush()
    async with gov.store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(usage_records))).mappings()]


def _synthetic(n: int, key_ids: list[str], seed: int) -> list[dict[str, Any]]:
    """Records spread over three days, some provisional (replaced later), with and without tags."""
    rnd = random.Random(seed)
    base = 1_767_225_600.0 - 2 * 86400 + 123.4  # a few seconds past a minute, two days before a day starts
    out = []
    for i in range(n):
        t = base + rnd.uniform(0, 3 * 86400)
        key = rnd.choice([*key_ids, None])
        out.append({
            "id": f"syn{seed}-{i}", "request_id": f"syn-{i}", "created_at": t, "day": "ignored",
            "key_id": key, "team": rnd.choice(["t1", "t2", None]), "model": rnd.choice(["smart", "cheap"]),
            "provider": rnd.choice(["up", "other"]), "status": rnd.choice([200, 200, 429, 502, 0]),
            "stream": False, "prompt_tokens": rnd.randrange(1000), "completion_tokens": rnd.randrange(100),
            "cached_tokens": 0, "cost_usd": rnd.random() / 7, "price_known": True, "estimated": False,
            "latency_ms": rnd.uniform(1, 900), "attempts": 1,
            "tags": rnd.choice([None, "a", "a,b", "env=prod"]),
        })
    return out


# The synthetic records are months old: with minute rollups kept 48 hours the edges of a range are
# read from the records, with them kept for ever from the minute rows; pruned, the answers stay exact.
@pytest.mark.parametrize("minute_hours", [48.0, 1e7])
async def test_rollups_equal_the_records_for_every_grouping_and_range(
    tmp_path: Path, db_url: str, minute_hours: float
) -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(completion()))
        async with run_gateway(config(up, tmp_path, db_url, minute_hours)) as gw:
            gov = gw.runtime.governance
            await call(gw.url, "POST", "/admin/teams", body={"name": "t1"})
            _, k1 = await call(gw.url, "POST", "/admin/keys", body={"name": "one", "team": "t1"})
            _, k2 = await call(gw.url, "POST", "/admin/keys", body={"name": "two"})
            for i in range(6):  # real calls through the gateway, tagged and not
                key = k1["key"] if i % 2 else k2["key"]
                hdrs = {"x-fluxway-tags": "a, b"} if i % 3 == 0 else {}
                status, _ = await call(gw.url, "POST", "/v1/chat/completions", key=key, headers=hdrs,
                                       body={"model": "smart" if i < 4 else "cheap", "messages": HI})
                assert status == 200
            syn = _synthetic(400, [k1["id"], k2["id"]], seed=1)
            await gov.store.usage.insert(syn)
            # Provisional records replaced by their final ones, and a replay of records already stored.
            finals = [{**r, "status": 200, "cost_usd": r["cost_usd"] + 1.0, "tags": "final"}
                      for r in syn if r["status"] == 0]
            assert finals
            await gov.store.usage.insert(finals[: len(finals) // 2] + syn[:50])
            await gov.store.usage.insert(finals)
            records = await _records(gov)
            assert len(records) == 406 and not any(r["status"] == 0 for r in records)
            t0 = min(r["created_at"] for r in records)
            ranges = [(None, None), (t0 + 3600 * 5 + 17.5, t0 + 86400 * 2 + 59.9), (t0 + 30.25, t0 + 95.5)]

            async def check_ranges() -> None:
                for group in GROUPS:
                    for since, until in ranges:
                        params = {"group_by": group}
                        if since is not None:
                            params |= {"since": str(since), "until": str(until)}
                        status, body = await call(gw.url, "GET", "/admin/usage", params=params)
                        assert status == 200, body
                        assert_matches(body["data"], group, raw_totals(records, group, since, until))

            await check_ranges()
            if minute_hours < 1e6:
                # The retention job prunes the old minute rows (hour and day rows stay), answers unchanged.
                async with gov.store.engine.connect() as conn:
                    minutes = sa.text("SELECT count(*) FROM usage_rollups WHERE grain = 60")
                    before = (await conn.execute(minutes)).scalar_one()
                assert await gov.usage.prune_rollups() >= before - 50 > 0
                async with gov.store.engine.connect() as conn:
                    assert (await conn.execute(minutes)).scalar_one() <= 50  # the six live calls' minutes
                await check_ranges()
            # Property: every grouping but tag partitions the records; its totals sum to them all.
            for group in ("key", "team", "model", "provider", "status", "day", "hour"):
                _, body = await call(gw.url, "GET", "/admin/usage", params={"group_by": group})
                assert sum(d["requests"] for d in body["data"]) == len(records)
                assert sum(d["cost_usd"] for d in body["data"]) == pytest.approx(sum(r["cost_usd"] for r in records))
            _, tags = await call(gw.url, "GET", "/admin/usage", params={"group_by": "tag"})
            by_tag = {d["tag"]: d["requests"] for d in tags["data"]}
            assert by_tag["a"] >= 2 and by_tag["b"] >= 2 and by_tag["final"] == len(finals)


async def test_me_sees_only_its_own_key(tmp_path: Path, db_url: str) -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(completion()))
        async with run_gateway(config(up, tmp_path, db_url)) as gw:
            await call(gw.url, "POST", "/admin/teams", body={"name": "t1"})
            _, k1 = await call(gw.url, "POST", "/admin/keys", body={"name": "one", "team": "t1", "rpm": 50,
                                                                  "budget": {"amount_usd": 5, "period": "daily"}})
            _, k2 = await call(gw.url, "POST", "/admin/keys", body={"name": "two", "models": ["cheap"]})
            for _ in range(3):
                await call(gw.url, "POST", "/v1/chat/completions", key=k1["key"],
                           body={"model": "smart", "messages": HI}, headers={"x-fluxway-tags": "x"})
            await call(gw.url, "POST", "/v1/chat/completions", key=k2["key"], body={"model": "cheap", "messages": HI})

            status, me1 = await call(gw.url, "GET", "/v1/me", key=k1["key"])
            assert status == 200 and me1["id"] == k1["id"] and me1["name"] == "one" and me1["team"] == "t1"
            assert me1["budgets"][0]["amount_usd"] == 5 and me1["spend_usd"] >= 0
            assert any(lim.get("rpm") == 50 for lim in me1["limits"])
            async with aiohttp.ClientSession(headers={"x-api-key": k2["key"]}) as s, s.get(gw.url + "/v1/me") as r:
                me2 = await r.json()
            assert me2["id"] == k2["id"] and me2["models"] == ["cheap"]

            for group in ("model", "key", "tag", "day", "hour", "team", "provider", "status"):
                _, u1 = await call(gw.url, "GET", "/v1/me/usage", key=k1["key"], params={"group_by": group})
                _, u2 = await call(gw.url, "GET", "/v1/me/usage", key=k2["key"], params={"group_by": group})
                assert sum(d["requests"] for d in u1["data"]) == 3, (group, u1)
                assert sum(d["requests"] for d in u2["data"]) == 1, (group, u2)
            _, u1 = await call(gw.url, "GET", "/v1/me/usage", key=k1["key"], params={"group_by": "key"})
            assert [d["key"] for d in u1["data"]] == [k1["id"]]
            _, u2 = await call(gw.url, "GET", "/v1/me/usage", key=k2["key"])
            assert [d["model"] for d in u2["data"]] == ["cheap"]
            _, t1 = await call(gw.url, "GET", "/v1/me/usage", key=k1["key"], params={"group_by": "tag"})
            assert {d["tag"]: d["requests"] for d in t1["data"]} == {"x": 3}

            status, err = await call(gw.url, "GET", "/v1/me", key="sk-fw-nope")
            assert status == 401 and err["error"]["type"] == "authentication_error"
            status, err = await call(gw.url, "GET", "/v1/me/usage", key=k1["key"], params={"group_by": "colour"})
            assert status == 400 and err["error"]["param"] == "group_by"
            status, err = await call(gw.url, "GET", "/v1/me/usage", key=k1["key"], params={"since": "soon"})
            assert status == 400 and err["error"]["param"] == "since"


@pytest.mark.parametrize("tags", ["a b", "x" * 49, ",".join(f"t{i}" for i in range(11)), "a*b", "a;b"])
async def test_bad_tags_header_is_a_400_naming_it(tmp_path: Path, tags: str) -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(completion()))
        async with run_gateway(config(up, tmp_path, f"sqlite:///{tmp_path}/f.db")) as gw:
            status, err = await call(gw.url, "POST", "/v1/chat/completions", headers={"x-fluxway-tags": tags},
                                     body={"model": "smart", "messages": HI})
            assert status == 400 and err["error"]["param"] == "x-fluxway-tags", err
            assert not up.requests  # refused before any upstream call
            status, err = await call(gw.url, "GET", "/admin/usage", params={"group_by": "colour"})
            assert status == 400 and err["error"]["param"] == "group_by"
