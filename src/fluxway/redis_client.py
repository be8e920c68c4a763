"""The one shared Redis client of a gateway process (rate limits, key-cache invalidation, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis


def create_redis(url: str, *, connect_timeout: float = 2.0, timeout: float = 5.0) -> Redis:
    """An asyncio client with a connection pool; connects lazily on first use. Close it with ``aclose()``."""
    from redis.asyncio import Redis

    return Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=30,
    )


__all__ = ["create_redis"]
