from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from fluxway.canonical import CanonicalRequest, Endpoint
from fluxway.errors import GatewayError
from fluxway.policy.accounts import (
    Accounts,
    BudgetIn,
    KeyCreate,
    KeyUpdate,
    LimitIn,
    TeamCreate,
    TeamUpdate,
    key_out,
)
from fluxway.policy.hooks import CallContext
from fluxway.policy.keys import (
    KeyCache,
    KeyPrincipal,
    RedisInvalidation,
    VirtualKeyAuth,
    hash_secret,
    visible_prefix,
)
from fluxway.store import Store
from tests.store import dbs

db_url = dbs.db_url


class Clock:
    def __init__(self, t: float = 1_750_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.open(db_url)
    await s.upgrade()
    yield s
    await s.close()


def ctx(api_key: str | None, model: str = "smart") -> CallContext:
    return CallContext(
        request_id="r1",
        ingress="openai",
        headers={},
        api_key=api_key,
        request=CanonicalRequest(Endpoint.CHAT, model, {"model": model, "messages": []}),
    )


async def test_secret_format_and_hash_only_storage(store: Store) -> None:
    cache = KeyCache(store.keys)
    accounts = Accounts(store, cache)
    row, secret = await accounts.create_key(KeyCreate(name="ci"))
    assert secret.startswith("sk-fw-") and len(secret) > 40
    assert row["prefix"] == visible_prefix(secret) == secret[:14]
    stored = await store.keys.get_key(row["id"])
    assert stored is not None
    assert secret not in {str(v) for v in stored.values()}
    assert stored["key_hash"] == hash_secret(secret)
    out = key_out(stored)
    assert "key_hash" not in out and "key" not in out and out["prefix"] == row["prefix"]


async def test_auth_resolves_keys_and_refuses_bad_ones(store: Store) -> None:
    clock = Clock()
    cache = KeyCache(store.keys)
    await cache.refresh()
    accounts = Accounts(store, cache, clock=clock)
    auth = VirtualKeyAuth("master-secret", cache, clock)

    await accounts.create_team(TeamCreate(name="search", rpm=100, tpm=None, models=["smart", "cheap"]))
    row, secret = await accounts.create_key(
        KeyCreate(name="bot", team="search", models=["smart", "openai/*"], rpm=60, tpm=1000,
                  model_limits={"smart": LimitIn(rpm=3), "openai/*": LimitIn(tpm=50)},
                  budget=BudgetIn(amount_usd=5, period="daily"),
                  expires_at=datetime.fromtimestamp(clock.t + 60, UTC))
    )
    c = ctx(secret, "smart")
    await auth.pre(c)
    p = c.principal
    assert isinstance(p, KeyPrincipal)
    assert (p.id, p.role, p.team, p.name) == (row["id"], "user", "search", "bot")
    assert list(p.limits) == [
        {"scope": f"key:{row['id']}", "rpm": 60, "tpm": 1000},
        {"scope": f"key:{row['id']}:model:smart", "rpm": 3, "tpm": None},
        {"scope": f"key:{row['id']}:model:openai/*", "rpm": None, "tpm": 50},
        {"scope": "team:search", "rpm": 100, "tpm": None},
    ]
    assert [b.scope for b in p.budgets] == [f"key:{row['id']}"]

    # model globs: the key allows smart and openai/*, the team smart and cheap -> only smart
    for model, allowed in [("smart", True), ("cheap", False), ("openai/gpt-4o", False), ("other", False)]:
        c = ctx(secret, model)
        if allowed:
            await auth.pre(c)
        else:
            with pytest.raises(GatewayError) as ei:
                await auth.pre(c)
            assert ei.value.status == 403 and ei.value.param == "model"

    master = ctx("master-secret")
    await auth.pre(master)
    assert master.principal is not None and master.principal.is_admin

    for bad in [None, "", "sk-fw-nope", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "master"]:
        with pytest.raises(GatewayError) as ei:
            await auth.pre(ctx(bad))
        assert ei.value.status == 401

    clock.t += 61  # expired
    with pytest.raises(GatewayError, match="expired") as ei:
        await auth.pre(ctx(secret))
    assert ei.value.status == 401


async def test_revoke_takes_effect_at_once_locally(store: Store) -> None:
    cache = KeyCache(store.keys)
    accounts = Accounts(store, cache)
    auth = VirtualKeyAuth(None, cache)
    row, secret = await accounts.create_key(KeyCreate(name="a"))
    await auth.pre(ctx(secret))
    await accounts.revoke_key(row["id"])
    with pytest.raises(GatewayError) as ei:
        await auth.pre(ctx(secret))
    assert ei.value.status == 401
    # revoking again is harmless; the revocation is in the store for other instances
    assert (await accounts.revoke_key(row["id"]))["revoked_at"] is not None
    other = KeyCache(store.keys)
    await other.refresh()
    assert other.lookup(secret) is None


async def test_open_gateway_while_no_key_is_active(store: Store) -> None:
    cache = KeyCache(store.keys)
    await cache.refresh()
    auth = VirtualKeyAuth(None, cache)
    anon = ctx(None)
    await auth.pre(anon)
    assert anon.principal is not None and anon.principal.id == "anonymous"
    row, _ = await Accounts(store, cache).create_key(KeyCreate(name="first"))
    with pytest.raises(GatewayError):
        await auth.pre(ctx(None))
    await Accounts(store, cache).revoke_key(row["id"])
    reopened = ctx(None)  # revoking the last key returns to open mode (issue 10) ...
    await auth.pre(reopened)
    assert reopened.principal is not None and reopened.principal.id == "anonymous"
    assert not reopened.principal.is_admin  # ... which never grants the admin API
    other = KeyCache(store.keys)  # and so does a fresh load of the store
    await other.refresh()
    assert not other.has_keys


async def test_update_key_and_team_propagate(store: Store) -> None:
    cache = KeyCache(store.keys)
    accounts = Accounts(store, cache)
    auth = VirtualKeyAuth(None, cache)
    await accounts.create_team(TeamCreate(name="t1"))
    row, secret = await accounts.create_key(KeyCreate(name="k", team="t1", models=["smart"]))
    with pytest.raises(GatewayError):
        await auth.pre(ctx(secret, "cheap"))
    await accounts.update_key(row["id"], KeyUpdate(models=None, rpm=5))
    c = ctx(secret, "cheap")
    await auth.pre(c)
    assert c.principal is not None
    assert list(c.principal.limits) == [{"scope": f"key:{row['id']}", "rpm": 5, "tpm": None}]
    await accounts.update_team("t1", TeamUpdate(models=["smart"], budget=BudgetIn(amount_usd=1)))
    with pytest.raises(GatewayError) as ei:
        await auth.pre(ctx(secret, "cheap"))
    assert ei.value.status == 403
    c = ctx(secret, "smart")
    await auth.pre(c)
    assert c.principal is not None and [b.scope for b in c.principal.budgets] == ["team:t1"]

    with pytest.raises(GatewayError) as ei:
        await accounts.create_key(KeyCreate(team="missing"))
    assert ei.value.status == 400 and ei.value.param == "team"
    with pytest.raises(GatewayError) as ei:
        await accounts.create_team(TeamCreate(name="t1"))
    assert ei.value.status == 409
    with pytest.raises(GatewayError) as ei:
        await accounts.delete_team("t1")  # still has an active key
    assert ei.value.status == 409
    await accounts.revoke_key(row["id"])
    with pytest.raises(GatewayError) as ei:
        await accounts.update_key(row["id"], KeyUpdate(name="x"))
    assert ei.value.status == 409
    await accounts.delete_team("t1")
    with pytest.raises(GatewayError) as ei:
        await accounts.get_team("t1")
    assert ei.value.status == 404


async def test_other_instance_sees_changes_after_ttl_refresh(store: Store) -> None:
    mine, theirs = KeyCache(store.keys, ttl=0.05), KeyCache(store.keys, ttl=0.05)
    await theirs.refresh()
    theirs.start()
    try:
        row, secret = await Accounts(store, mine).create_key(KeyCreate(name="x"))
        for _ in range(100):
            if theirs.lookup(secret) is not None:
                break
            await asyncio.sleep(0.02)
        assert theirs.lookup(secret) is not None
        await Accounts(store, mine).revoke_key(row["id"])
        for _ in range(100):
            if theirs.lookup(secret) is None:
                break
            await asyncio.sleep(0.02)
        assert theirs.lookup(secret) is None
    finally:
        await theirs.close()


async def test_redis_invalidation_reaches_other_instance_at_once(store: Store, redis_url: str) -> None:
    mine, theirs = KeyCache(store.keys, ttl=3600), KeyCache(store.keys, ttl=3600)
    await theirs.refresh()
    pub, sub = RedisInvalidation(redis_url, mine), RedisInvalidation(redis_url, theirs)
    theirs.start()
    sub.start()
    try:
        await asyncio.sleep(0.2)  # subscribed
        accounts = Accounts(store, mine, notify=pub.publish)
        row, secret = await accounts.create_key(KeyCreate(name="x"))
        for _ in range(100):
            if theirs.lookup(secret) is not None:
                break
            await asyncio.sleep(0.02)
        assert theirs.lookup(secret) is not None  # long before the 1 h TTL
        await accounts.revoke_key(row["id"])
        for _ in range(100):
            if theirs.lookup(secret) is None:
                break
            await asyncio.sleep(0.02)
        assert theirs.lookup(secret) is None
    finally:
        await sub.close()
        await pub.close()
        await theirs.close()
