"""The one shared Redis client of a gateway process (rate limits, budgets, key-cache invalidation, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis


def create_redis(url: str, *, max_connections: int = 64, connect_timeout: float = 2.0, timeout: float = 5.0) -> Redis:
    """An asyncio client on a bounded pool: past ``max_connections`` in use, callers wait for one
    (up to ``timeout``) instead of opening a connection per concurrent request. Connects lazily;
    close it with ``aclose()``."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes it
