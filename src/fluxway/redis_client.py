"""The one place Redis clients are made, and how this process sees Redis's health.

:func:`create_redis` builds every client (production and tests alike): a bounded pool, short
timeouts, and one immediate retry on a connection error, so that connections left stale by a Redis
restart are replaced on their first use instead of failing the call.

:class:`RedisHealth` is shared by the hooks that keep state on Redis (budgets, rate limits). The
first failed call marks Redis down; from then on the hooks skip Redis (no timeouts paid per call)
and follow ``redis.on_failure``: ``open`` serves on in-process state (counted, with a warning at most
every 30 s), ``closed`` answers 503 ``redis_unavailable`` with ``retry-after``. A background probe
pings Redis until it answers again, then Redis is used again (scripts missing after a restart are
reloaded by redis-py on ``NOSCRIPT``; empty budget buckets are rebuilt from the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from redis.exceptions import RedisError

from fluxway.errors import GatewayError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("fluxway.redis")

OnFailure = Literal["open", "closed"]

# What a failed Redis call raises: redis-py's errors, socket errors, timeouts.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


def create_redis(
    url: str,
    *,
    max_connections: int = 64,
    connect_timeout: float = 2.0,
    timeout: float | None = 5.0,
) -> Redis:
    """An asyncio client on a bounded pool: past ``max_connections`` in use, callers wait for one
    (up to ``timeout``) instead of opening a connection per concurrent request. A command that
    meets a dead connection (Redis restarted) is retried once on a fresh one. ``timeout=None``: no
    socket timeout (a pub/sub listener). Connects lazily; close it with ``aclose()``."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout if timeout is not None else 10.0,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes it


def redis_unavailable(retry_after: int = 1) -> GatewayError:
    return GatewayError(
        503,
        "Redis is unavailable, so budgets and rate limits cannot be enforced (redis.on_failure: closed); "
        "retry shortly",
        type="server_error",
        code="redis_unavailable",
        headers={"retry-after": str(retry_after)},
    )


class RedisHealth:
    """Up or down as this process's calls found it, the ``on_failure`` policy, and its counters."""

    def __init__(
        self,
        client: Redis,
        *,
        on_failure: OnFailure = "open",
        probe_interval: float = 0.2,
        probe_max_interval: float = 0.5,
        warn_every: float = 30.0,
    ) -> None:
        self.client = client
        self.on_failure: OnFailure = on_failure
        self.up = True
        self.outages = 0  # times Redis went from up to down
        self.fallbacks: Counter[str] = Counter()  # calls served on local state, by what ("budget", "limits")
        self.refused = 0  # calls answered 503 redis_unavailable (closed)
        self._probe_interval = probe_interval
        self._probe_max = probe_max_interval
        self._warn_every = warn_every
        self._warned_at = -math.inf
        self._down_since = 0.0
        self._last_error = ""
        self._probe: asyncio.Task[None] | None = None
        self._recovered: list[Callable[[], None]] = []

    def on_recover(self, callback: Callable[[], None]) -> None:
        """Called each time Redis answers again after an outage."""
        self._recovered.append(callback)

    def failed(self, exc: BaseException) -> None:
        """A Redis call failed: mark Redis down and start probing for its return."""
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not self.up:
            return
        self.up = False
        self.outages += 1
        self._down_since = time.monotonic()
        self._warned_at = -math.inf
        self._warn()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis(), name="fluxway-redis-probe")

    def fallback(self, what: str) -> None:
        """A call that needs Redis while it is down: count it and return (open), or raise 503 (closed)."""
        if self.on_failure == "closed":
            self.refused += 1
            self._warn()
            raise redis_unavailable(max(1, math.ceil(self._probe_interval)))
        self.fallbacks[what] += 1
        self._warn()

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at < self._warn_every:
            return
        self._warned_at = now
        served = sum(self.fallbacks.values())
        if self.on_failure == "closed":
            log.warning(
                "Redis unavailable for %.1fs (%s): answering 503 redis_unavailable to calls that need it "
                "(redis.on_failure: closed; %d so far)", now - self._down_since, self._last_error, self.refused,
            )
        else:
            log.warning(
                "Redis unavailable for %.1fs (%s): budgets and rate limits held per process until it is back "
                "(redis.on_failure: open; %d hook calls served locally so far)",
                now - self._down_since, self._last_error, served,
            )

    async def _wait_for_redis(self) -> None:
        delay = self._probe_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.client.ping(), timeout=max(1.0, delay))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                delay = min(delay * 2, self._probe_max)
                continue
            break
        self.up = True
        log.warning("Redis is back after %.1fs; budgets and rate limits are shared again",
                    time.monotonic() - self._down_since)
        for callback in self._recovered:
            try:
                callback()
            except Exception:
                log.exception("a Redis recovery callback failed")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None


__all__ = ["REDIS_FAILURES", "OnFailure", "RedisHealth", "create_redis", "redis_unavailable"]
