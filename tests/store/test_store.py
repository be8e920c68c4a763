from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from fluxway.store import Store
from fluxway.store.engine import async_url, sqlite_path
from fluxway.store.migrate import current, head_revision
from fluxway.store.usage import BadCursor, decode_cursor, encode_cursor
from tests.store import dbs

db_url = dbs.db_url


def test_async_urls() -> None:
    assert async_url("sqlite:///./x.db") == "sqlite+aiosqlite:///./x.db"
    assert async_url("postgresql://u@h:5/db") == "postgresql+asyncpg://u@h:5/db"
    assert async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    with pytest.raises(ValueError, match="unsupported"):
        async_url("mysql://u@h/db")
    with pytest.raises(ValueError, match="not a database URL"):
        async_url("fluxway.db")
    assert sqlite_path("sqlite:////tmp/a/b.db") is not None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://h/db") is None


def _record(rid: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": rid,
        "request_id": "x-" + rid,
        "created_at": 1_700_000_000.0,
        "day": "2023-11-14",
        "key_id": "key_a",
        "team": "search",
        "endpoint": "chat",
        "model": "smart",
        "provider": "openai",
        "upstream_model": "gpt-4o",
        "status": 200,
        "stream": False,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": 0.001,
        "price_known": True,
        "estimated": False,
        "latency_ms": 12.5,
        "ttft_ms": None,
        "attempts": 1,
        "cache": "miss",
        "error": None,
    }
    base.update(kw)
    return base


async def test_migrations_create_schema_and_are_idempotent(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        assert await store.upgrade() == head_revision()
        assert await store.upgrade() == head_revision()  # a second run is a no-op
        assert await current(store.engine) == head_revision()
        async with store.engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert {"teams", "virtual_keys", "usage_records", "alembic_version"} <= names
        assert await store.ping()
    finally:
        await store.close()


async def test_concurrent_upgrades_from_two_stores(db_url: str) -> None:
    a, b = Store.open(db_url), Store.open(db_url)
    try:
        revs = await asyncio.gather(a.upgrade(), b.upgrade())
        assert revs == [head_revision(), head_revision()]
    finally:
        await a.close()
        await b.close()


async def test_keys_and_teams_crud(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        now = time.time()
        team = {"id": "search", "models": ["smart"], "rpm": 10, "tpm": None, "budget_usd": 5.0,
                "budget_period": "monthly", "metadata": {"owner": "x"}, "created_at": now, "updated_at": now}
        assert await store.keys.insert_team(team)
        assert not await store.keys.insert_team(team)  # duplicate name
        got = await store.keys.get_team("search")
        assert got is not None and got["models"] == ["smart"] and got["metadata"] == {"owner": "x"}
        key = {"id": "key_1", "name": "ci", "prefix": "sk-fw-abcdefgh", "key_hash": "h" * 64, "role": "user",
               "team": "search", "models": None, "rpm": None, "tpm": None, "budget_usd": None,
               "budget_period": None, "expires_at": None, "metadata": {}, "created_at": now, "updated_at": now,
               "revoked_at": None}
        await store.keys.insert_key(key)
        assert (await store.keys.get_key("key_1"))["name"] == "ci"  # type: ignore[index]
        assert await store.keys.count_active_keys_of_team("search") == 1
        updated = await store.keys.update_key("key_1", {"revoked_at": now + 1, "updated_at": now + 1})
        assert updated is not None and updated["revoked_at"] == now + 1
        assert await store.keys.update_key("nope", {"name": "x"}) is None
        assert await store.keys.active_keys() == []
        assert len(await store.keys.list_keys()) == 1
        assert await store.keys.count_active_keys_of_team("search") == 0
        assert (await store.keys.update_team("search", {"rpm": 20}))["rpm"] == 20  # type: ignore[index]
        assert await store.keys.delete_team("search")
        assert not await store.keys.delete_team("search")
        assert await store.keys.list_teams() == []
    finally:
        await store.close()


async def test_usage_insert_is_idempotent_and_sums(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        recs = [_record(f"r{i}", cost_usd=0.5, created_at=1000.0 + i) for i in range(10)]
        await store.usage.insert(recs, batch_size=3)
        await store.usage.insert([*recs[:5], _record("r10", key_id="key_b", team="other", cost_usd=2.0)])
        await store.usage.insert([_record("dup"), _record("dup")])  # duplicates inside one batch
        assert await store.usage.count() == 12
        assert await store.usage.spend(key_id="key_a") == pytest.approx(5.0 + 0.001)
        assert await store.usage.spend(key_id="key_a", since=1005.0) == pytest.approx(2.5 + 0.001)
        assert await store.usage.spend(team="other") == pytest.approx(2.0)
        assert await store.usage.spend(key_id="nobody") == 0.0
    finally:
        await store.close()


T0 = 1704153600.0 - 5  # 2024-01-01T23:59:55Z: the first ten records that day, the others the next


async def test_usage_aggregates_and_log_pages(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        recs = []
        for i in range(25):
            recs.append(
                _record(
                    f"req-{i:03d}",
                    created_at=T0 + (i // 2),  # pairs share a timestamp: the cursor must break ties
                    day="2024-01-01" if i < 10 else "2024-01-02",
                    key_id="k1" if i % 2 else "k2",
                    team="t1",
                    model="smart" if i < 20 else "cheap",
                    provider="openai" if i % 3 else "anthropic",
                    status=200 if i % 5 else 429,
                    cost_usd=0.25,
                )
            )
        await store.usage.insert(recs)
        by_model = {r["group"]: r for r in await store.usage.aggregate("model")}
        assert by_model["smart"]["requests"] == 20 and by_model["cheap"]["requests"] == 5
        assert by_model["smart"]["errors"] == 4
        assert by_model["cheap"]["cost_usd"] == pytest.approx(1.25)
        by_day = {r["group"]: r["requests"] for r in await store.usage.aggregate("day")}
        assert by_day == {"2024-01-01": 10, "2024-01-02": 15}
        by_key = {r["group"]: r["requests"] for r in await store.usage.aggregate("key", since=T0 + 5, until=T0 + 10)}
        assert by_key == {"k1": 5, "k2": 5}
        assert {r["group"] for r in await store.usage.aggregate("provider")} == {"openai", "anthropic"}
        assert [r["group"] for r in await store.usage.aggregate("team")] == ["t1"]

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            rows, cursor = await store.usage.logs(limit=7, cursor=cursor)
            seen.extend(r["id"] for r in rows)
            pages += 1
            if cursor is None:
                break
        assert pages == 4
        assert seen == sorted((r["id"] for r in recs), reverse=True)  # newest first, no gaps or repeats

        errors, nxt = await store.usage.logs(status="error", limit=100)
        assert {r["status"] for r in errors} == {429} and len(errors) == 5 and nxt is None
        only, _ = await store.usage.logs(key_id="k1", model="cheap", status=200, since=T0, limit=100)
        assert {(r["key_id"], r["model"], r["status"]) for r in only} == {("k1", "cheap", 200)}
        assert len(only) == 2
    finally:
        await store.close()


def test_cursor_round_trip_and_rejects_garbage() -> None:
    c = encode_cursor(1700000000.123456, "req-1")
    assert decode_cursor(c) == (1700000000.123456, "req-1")
    for bad in ["", "!!!", encode_cursor(1.0, "x")[:-3] + "zzz", "bnVsbA"]:
        with pytest.raises(BadCursor):
            decode_cursor(bad)


def test_head_constant_matches_the_shipped_migrations() -> None:
    from fluxway.store.migrate import HEAD

    assert head_revision() == HEAD
