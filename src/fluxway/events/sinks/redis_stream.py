"""Redis Streams sink: each event XADDed to the stream (fields ``id``, ``type``, ``event`` = the JSON),
a batch in one pipelined round trip, on the top-level ``redis.url``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fluxway.events.settings import RedisStreamSink
from fluxway.events.sinks.base import DeliveryError, Sent
from fluxway.redis_client import REDIS_FAILURES, create_redis
from fluxway.store.outbox import Claimed


class RedisStreamDelivery:
    def __init__(self, cfg: RedisStreamSink, url: str) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._redis: Any = create_redis(url, max_connections=4)

    async def send(self, batch: Sequence[Claimed]) -> Sent:
        cfg = self._cfg
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for ev in batch:
                    pipe.xadd(cfg.stream, {"id": ev.id, "type": ev.type, "event": ev.body},
                              maxlen=cfg.maxlen, approximate=True)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            return Sent(0, DeliveryError(f"XADD {cfg.stream}: {type(exc).__name__}: {exc}"))
        return Sent(len(batch))

    async def close(self) -> None:
        await self._redis.aclose()
