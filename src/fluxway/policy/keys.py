"""Virtual keys: ``sk-fw-…`` secrets stored only as a hash, resolved from an in-memory cache.

The hot path never queries the store: the cache holds every active key and team, refreshes on a
short TTL and at once when another instance publishes a change on Redis (``fluxway:keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluxway.errors import forbidden, unauthorized
from fluxway.policy.auth import ANONYMOUS, MASTER
from fluxway.policy.hooks import CallContext, ModelFilter, Outcome, Principal, ShortCircuit, globs_allow
from fluxway.routing.clock import Clock
from fluxway.store.keys import KeyStore

log = logging.getLogger("fluxway.keys")

KEY_PREFIX = "sk-fw-"
VISIBLE_CHARS = 8  # characters after "sk-fw-" kept in clear for lookup and display
PREFIX_LEN = len(KEY_PREFIX) + VISIBLE_CHARS
INVALIDATION_CHANNEL = "fluxway:keys"



def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """sha256 of the whole secret: a 256-bit random token needs no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def visible_prefix(secret: str) -> str:
    return secret[:PREFIX_LEN]


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget a call is charged against: ``scope`` is ``key:<id>`` or ``team:<name>``."""

    scope: str
    amount_usd: float
    period: str  # daily | monthly | total


@dataclass(frozen=True, slots=True)
class TeamInfo:
    id: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget: BudgetLine | None = None
    mcp_tools: tuple[str, ...] | None = None  # MCP tool globs (`server.tool`); None: all

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TeamInfo:
        tid = str(row["id"])
        return cls(
            id=tid,
            models=_globs(row.get("models")),
            rpm=row.get("rpm"),
            tpm=row.get("tpm"),
            budget=_budget(f"team:{tid}", row),
            mcp_tools=_globs(row.get("mcp_tools")),
        )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    key_hash: str
    prefix: str
    name: str | None = None
    role: str = "user"
    team: str | None = None
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    model_limits: tuple[tuple[str, int | None, int | None], ...] = ()  # (model glob, rpm, tpm)
    budget: BudgetLine | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    max_concurrency: int | None = None  # metadata.max_concurrency: calls in flight at once
    mcp_tools: tuple[str, ...] | None = None  # MCP tool globs (`server.tool`); None: all

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> KeyInfo:
        kid = str(row["id"])
        return cls(
            id=kid,
            key_hash=str(row["key_hash"]),
            prefix=str(row["prefix"]),
            name=row.get("name"),
            role=str(row.get("role") or "user"),
            team=row.get("team"),
            models=_globs(row.get("models")),
            rpm=row.get("rpm"),
            tpm=row.get("tpm"),
            model_limits=_model_limits(row.get("model_limits")),
            budget=_budget(f"key:{kid}", row),
            expires_at=row.get("expires_at"),
            revoked_at=row.get("revoked_at"),
            max_concurrency=_max_concurrency(row.get("metadata")),
            mcp_tools=_globs(row.get("mcp_tools")),
        )


def _max_concurrency(metadata: Any) -> int | None:
    value = metadata.get("max_concurrency") if isinstance(metadata, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _globs(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(str(v) for v in value)


def _model_limits(value: Any) -> tuple[tuple[str, int | None, int | None], ...]:
    if not isinstance(value, Mapping):
        return ()
    out = []
    for glob, lim in value.items():
        if isinstance(lim, Mapping):
            out.append((str(glob), lim.get("rpm"), lim.get("tpm")))
    return tuple(out)


def _budget(scope: str, row: Mapping[str, Any]) -> BudgetLine | None:
    amount = row.get("budget_usd")
    if amount is None:
        return None
    return BudgetLine(scope, float(amount), str(row.get("budget_period") or "monthly"))


@dataclass(slots=True)
class KeyPrincipal(Principal):
    """A virtual key's principal: its own model globs and its team's must both allow a model."""

    team_models: tuple[str, ...] | None = None
    team_mcp_tools: tuple[str, ...] | None = None

    def allows(self, model: str) -> bool:
        if not Principal.allows(self, model):
            return False
        if self.team_models is None:
            return True
        return Principal(id=self.id, models=self.team_models).allows(model)

    @property
    def model_filter(self) -> ModelFilter | None:
        return None if self.models is None and self.team_models is None else self.allows

    def allows_tool(self, tool: str) -> bool:
        return Principal.allows_tool(self, tool) and globs_allow(self.team_mcp_tools, tool)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """What the hot path needs for one key, precomputed when the cache loads."""

    info: KeyInfo
    team_models: tuple[str, ...] | None
    team_mcp_tools: tuple[str, ...] | None
    limits: tuple[dict[str, Any], ...]
    budgets: tuple[BudgetLine, ...]


def _resolve(info: KeyInfo, teams: Mapping[str, TeamInfo]) -> _Resolved:
    team = teams.get(info.team) if info.team else None
    limits: list[dict[str, Any]] = []
    if info.rpm is not None or info.tpm is not None:
        limits.append({"scope": f"key:{info.id}", "rpm": info.rpm, "tpm": info.tpm})
    for glob, rpm, tpm in info.model_limits:
        if rpm is not None or tpm is not None:
            limits.append({"scope": f"key:{info.id}:model:{glob}", "rpm": rpm, "tpm": tpm})
    if team is not None and (team.rpm is not None or team.tpm is not None):
        limits.append({"scope": f"team:{team.id}", "rpm": team.rpm, "tpm": team.tpm})
    budgets = tuple(b for b in (info.budget, team.budget if team else None) if b is not None)
    return _Resolved(info, team.models if team else None, team.mcp_tools if team else None, tuple(limits), budgets)


class KeyCache:
    """Every active key and team in memory; ``lookup`` is a dict access plus one hash compare."""

    def __init__(self, store: KeyStore, *, ttl: float = 5.0) -> None:
        self._store = store
        self.ttl = ttl
        self._by_prefix: dict[str, list[_Resolved]] = {}
        self._by_id: dict[str, _Resolved] = {}
        self.teams: dict[str, TeamInfo] = {}
        self.has_keys = False  # any active key: auth is then required (revoking the last reopens)
        self.loaded = False
        self.healthy = True
        self._generation = 0
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # loading -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload from the store; retried when a local change lands while it reads."""
        for _ in range(5):
            gen = self._generation
            rows = await self._store.active_keys()
            team_rows = await self._store.list_teams()
            if gen != self._generation:
                continue
            teams = {str(r["id"]): TeamInfo.from_row(r) for r in team_rows}
            self._install([KeyInfo.from_row(r) for r in rows], teams)
            self.loaded = True
            self.healthy = True
            return
        log.warning("key cache: changes kept landing during refresh; will retry")

    def _install(self, keys: list[KeyInfo], teams: dict[str, TeamInfo]) -> None:
        by_prefix: dict[str, list[_Resolved]] = {}
        by_id: dict[str, _Resolved] = {}
        for info in keys:
            r = _resolve(info, teams)
            by_id[info.id] = r
            by_prefix.setdefault(info.prefix, []).append(r)
        self._by_prefix, self._by_id, self.teams, self.has_keys = by_prefix, by_id, teams, bool(by_id)

    def apply_key(self, row: Mapping[str, Any]) -> None:
        """A local change (create, update, revoke) takes effect at once in this process."""
        self._generation += 1
        info = KeyInfo.from_row(row)
        keys = [r.info for r in self._by_id.values() if r.info.id != info.id]
        if info.revoked_at is None:
            keys.append(info)
        self._install(keys, self.teams)

    def apply_team(self, team_id: str, row: Mapping[str, Any] | None) -> None:
        self._generation += 1
        teams = dict(self.teams)
        if row is None:
            teams.pop(team_id, None)
        else:
            teams[team_id] = TeamInfo.from_row(row)
        self._install([r.info for r in self._by_id.values()], teams)

    def poke(self) -> None:
        """Refresh soon (another instance changed something)."""
        self._poke.set()

    # the hot path --------------------------------------------------------------------------

    def lookup(self, secret: str) -> _Resolved | None:
        candidates = self._by_prefix.get(secret[:PREFIX_LEN])
        if not candidates:
            return None
        digest = hash_secret(secret)
        for r in candidates:
            if hmac.compare_digest(r.info.key_hash, digest):
                return r
        return None

    def get(self, key_id: str) -> KeyInfo | None:
        r = self._by_id.get(key_id)
        return r.info if r else None

    # background ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fluxway-key-cache")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.ttl)
            self._poke.clear()
            try:
                await self.refresh()
            except Exception as exc:  # the store may be down: keep serving from the cache
                self.healthy = False
                log.warning("key cache refresh failed: %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class VirtualKeyAuth:
    """The auth hook: master key -> admin; ``sk-fw-`` keys -> their principal; else 401.

    With no master key and no key ever created, calls are anonymous (auth is off).
    """

    name = "auth"

    def __init__(self, master_key: str | None, cache: KeyCache, clock: Clock = time.time) -> None:
        self._master = master_key.encode() if master_key else None
        self._cache = cache
        self._clock = clock

    @property
    def open(self) -> bool:
        # Keys not loaded yet (the store was down at start): never open, keys may exist.
        return self._master is None and self._cache.loaded and not self._cache.has_keys

    def authenticate(self, api_key: str | None) -> Principal:
        if api_key:
            if self._master is not None and hmac.compare_digest(api_key.encode(), self._master):
                return MASTER
            if api_key.startswith(KEY_PREFIX):
                r = self._cache.lookup(api_key)
                if r is not None:
                    return self._principal(r)
        if self.open:
            return ANONYMOUS
        if not api_key:
            raise unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        raise unauthorized("invalid API key")

    def _principal(self, r: _Resolved) -> Principal:
        info = r.info
        if info.revoked_at is not None:
            raise unauthorized("this API key has been revoked")
        if info.expires_at is not None and self._clock() >= info.expires_at:
            raise unauthorized("this API key has expired")
        return KeyPrincipal(
            id=info.id,
            role=info.role,
            team=info.team,
            name=info.name,
            models=info.models,
            limits=r.limits,
            budgets=r.budgets,
            max_concurrency=info.max_concurrency,
            team_models=r.team_models,
            mcp_tools=info.mcp_tools,
            team_mcp_tools=r.team_mcp_tools,
        )

    async def resolve(self, api_key: str | None) -> Principal:
        """Who a key belongs to (the pipeline calls this before reading the body)."""
        return self.authenticate(api_key)

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        principal = ctx.principal if ctx.principal is not None else self.authenticate(ctx.api_key)
        model = ctx.request.model
        if model and not principal.allows(model):
            raise forbidden(f"this API key may not use model '{model}'", param="model")
        ctx.principal = principal
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None


class RedisInvalidation:
    """Publishes key/team changes and pokes the cache when another instance publishes one."""

    def __init__(self, url: str, cache: KeyCache) -> None:
        from fluxway.redis_client import create_redis

        self._redis = create_redis(url, max_connections=4, timeout=None)  # no read timeout: it listens
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    async def publish(self, what: str) -> None:
        try:
            await self._redis.publish(INVALIDATION_CHANNEL, what)
        except Exception as exc:  # other instances still catch up on their TTL
            self.healthy = False
            log.warning("could not publish key invalidation: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="fluxway-key-invalidation")

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._redis.pubsub() as ps:
                    await ps.subscribe(INVALIDATION_CHANNEL)
                    self.healthy = True
                    delay = 0.5
                    self._cache.poke()  # catch up on anything missed while disconnected
                    async for msg in ps.listen():
                        if msg.get("type") == "message":
                            self._cache.poke()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.healthy = False
                log.warning("key invalidation channel lost: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._redis.aclose()
