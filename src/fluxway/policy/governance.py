"""Governance, assembled: store, key cache + auth, budgets, usage records and the admin API.

The app builds one with :func:`build_governance`, puts ``hooks`` in its pipeline (auth first), mounts
``admin_app`` for ``/admin/*`` and ``/docs``, calls ``start()`` at startup and ``close()`` at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxway.config import Config
from fluxway.errors import GatewayError
from fluxway.policy.accounts import Accounts
from fluxway.policy.bodies import BodyCapture
from fluxway.policy.budget import BudgetHook, FallbackLedger, Ledger, MemoryLedger
from fluxway.policy.budget_redis import RedisLedger
from fluxway.policy.hooks import Hook
from fluxway.policy.keys import KeyCache, RedisInvalidation, VirtualKeyAuth
from fluxway.policy.limits import build_rate_limiter
from fluxway.policy.pricing import Pricer
from fluxway.policy.usage import UsageRecorder
from fluxway.redact import Redactor
from fluxway.redis_client import RedisHealth, create_redis
from fluxway.routing.clock import Clock
from fluxway.store import Store
from fluxway.store.engine import sqlite_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from fluxway.events.alerts.engine import AlertEngine
    from fluxway.events.outbox import Outbox

log = logging.getLogger("fluxway.governance")



def spool_dir_for(cfg: Config) -> Path:
    if cfg.usage.spool_dir:
        return Path(cfg.usage.spool_dir)
    db = sqlite_path(cfg.store.url)
    if db is not None:
        return db.with_name(db.name + ".spool")
    if cfg.store.url.startswith("sqlite"):  # in-memory SQLite: nothing outlives the process anyway
        return Path(tempfile.mkdtemp(prefix="fluxway-spool-"))
    return Path("fluxway-spool")


def _hold_seconds(cfg: Config) -> float:
    """The longest a call may hold a budget reservation (its leases are renewed until then)."""
    totals = [p.timeout.total for p in cfg.providers]
    totals += [m.timeout.total for m in cfg.models if m.timeout is not None]
    return max(totals, default=600.0) + 60.0


class _LazyAdmin:
    """The admin app, built (FastAPI imported) on its first request: it costs nothing until used."""

    def __init__(self, gov: Governance) -> None:
        self._gov = gov
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            from fluxway.api.admin import build_admin_app

            self._app = build_admin_app(self._gov)
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class Governance:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        clock: Clock = time.time,
        key_cache_ttl: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.store = store
        store.usage.minute_rollups_s = cfg.usage.minute_rollups_hours * 3600.0
        self.clock = clock
        self.pricer = Pricer(cfg)
        self.cache = KeyCache(store.keys, ttl=key_cache_ttl)
        self.auth = VirtualKeyAuth(cfg.auth.master_key, self.cache, clock)
        self.redis: Any = None
        self.redis_health: RedisHealth | None = None  # budgets and limits see Redis through it
        self.invalidation: RedisInvalidation | None = None
        ledger: Ledger
        if cfg.redis.url:
            self.redis = create_redis(cfg.redis.url)
            self.redis_health = RedisHealth(self.redis, on_failure=cfg.redis.on_failure)
            self.invalidation = RedisInvalidation(cfg.redis.url, self.cache)
            shared = RedisLedger(
                self.redis, self.spend, lease_seconds=cfg.redis.lease_s, max_hold_seconds=_hold_seconds(cfg),
                clock=clock, health=self.redis_health,
            )
            ledger = FallbackLedger(shared, MemoryLedger(self.spend), self.redis_health)
        else:
            ledger = MemoryLedger(self.spend)
        self.limits = build_rate_limiter(cfg, self.redis, self.redis_health)
        self.budget = BudgetHook(ledger, self.pricer, clock, allow_unpriced=cfg.budgets.allow_unpriced)
        logs = cfg.observability.logs
        self.usage = UsageRecorder(
            store.usage,
            self.pricer,
            spool_dir_for(cfg),
            flush_interval=cfg.usage.flush_interval_ms / 1000.0,
            batch_size=cfg.usage.batch_size,
            clock=clock,
            bodies=BodyCapture(logs.bodies, logs.max_body_bytes, Redactor.from_config(cfg)),
            retention_days=logs.retention_days,
            max_in_memory=cfg.usage.max_in_memory,
            body_backlog_bytes=int(logs.body_backlog_mb * 1024 * 1024),
        )
        notify = self.invalidation.publish if self.invalidation is not None else None
        self.accounts = Accounts(store, self.cache, clock=clock, notify=notify)
        # The stages built here, ordered by cfg.pipeline (default auth, limits, budget, usage: the
        # recorder's post runs first, its record reaching the spool before any other post hook
        # awaits, keeping the window before a crash as small as it can be).
        self.stages: dict[str, Hook] = {"auth": self.auth, "limits": self.limits, "budget": self.budget,
                                        "usage": self.usage}
        self.admin_app: ASGIApp = _LazyAdmin(self)
        # The alert engine, for /admin/alerts (set by the Runtime when `alerts` are configured).
        self.alerts: AlertEngine | None = None
        self._started = False
        self.store_ready = False  # migrated and the keys loaded
        self._store_task: asyncio.Task[None] | None = None
        self.events: Outbox | None = None  # the event outbox, when sinks are configured

    def attach_events(self, events: Outbox) -> None:
        """Producers here (usage records, keys, budgets) emit to ``events``; closed after the
        final usage flush and before the store."""
        self.events = events
        self.usage.events = events
        self.accounts.events = events
        self.budget.events = events

    async def _open_store(self) -> None:
        revision = await self.store.upgrade()
        log.info("store %s at revision %s", self.store.dialect, revision)
        await self.cache.refresh()
        self.store_ready = True

    async def _retry_store(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self._open_store()
            except Exception as exc:
                delay = min(delay * 2, 10.0)
                log.warning("store still unavailable (retrying in %.1fs): %s", delay, exc)
                continue
            log.info("store available again: keys loaded, spooled usage records catching up")
            await self.usage.replay()
            with contextlib.suppress(Exception):
                await self.usage.flush()
            return

    async def start(self) -> None:
        """Start even with the store down: the master key and the configured models serve at once,
        usage records wait in the spool, and the store is retried in the background."""
        try:
            await self._open_store()
        except Exception as exc:
            log.error("store unavailable at start, serving the configured models and spooling usage: %s", exc)
            self._store_task = asyncio.create_task(self._retry_store(), name="fluxway-store-retry")
        await self.usage.start()
        self.cache.start()
        if self.invalidation is not None:
            self.invalidation.start()
        elif self.cfg.server.workers > 1:
            log.warning(
                "%d workers without redis.url: each worker keeps its own budgets and rate limits; "
                "set redis.url to share them", self.cfg.server.workers
            )
        self._started = True

    async def close(self) -> None:
        if self._store_task is not None:
            self._store_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._store_task
            self._store_task = None
        await self.budget.close()
        await self.usage.close()
        if self.events is not None:
            await self.events.close()  # after the usage flush: its usage events are stored too
        await self.cache.close()
        if self.invalidation is not None:
            await self.invalidation.close()
        if self.redis_health is not None:
            await self.redis_health.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.close()
        self._started = False

    def ready(self) -> dict[str, bool]:
        checks = {"store": self._started and self.store_ready and self.cache.healthy and self.usage.healthy}
        if self.redis_health is not None:  # down: served on local state (open) or 503 for governed keys (closed)
            checks["redis"] = self.redis_health.up
        return checks

    async def spend(self, scope: str, since: float | None) -> float:
        """USD recorded for ``key:<id>`` or ``team:<name>`` since a time (budget buckets start from it)."""
        kind, _, ident = scope.partition(":")
        try:
            try:
                await self.usage.flush()  # what is still spooled counts too
            except Exception as exc:
                log.warning("spend of %s read without the spooled records: %s", scope, exc)
            if kind == "key":
                return await self.store.usage.spend(key_id=ident, since=since)
            return await self.store.usage.spend(team=ident, since=since)
        except Exception as exc:
            log.error("cannot read the spend of %s: %s", scope, exc)
            raise GatewayError(
                503, "the budget store is unavailable; retry shortly", type="server_error",
                code="budget_unavailable", headers={"retry-after": "1"},
            ) from exc


async def build_governance(cfg: Config, *, clock: Clock = time.time) -> Governance:
    """Everything governance needs, not yet started (call ``start()`` in the app's startup)."""
    return Governance(cfg, Store.open(cfg.store.url), clock=clock)
