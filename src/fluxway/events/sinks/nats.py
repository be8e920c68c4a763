"""NATS sink: each event published on the subject (header ``Nats-Msg-Id`` = the event id, which
JetStream de-duplicates on), the batch flushed to the server before it counts as delivered."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import nats
from nats.errors import Error as NatsError

from fluxway.events.settings import NatsSink
from fluxway.events.sinks.base import DeliveryError, Sent
from fluxway.store.outbox import Claimed


async def _quiet(exc: Exception) -> None:
    """nats-py logs every failed connect with a traceback; the outbox logs the delivery failure."""


class NatsDelivery:
    def __init__(self, cfg: NatsSink) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._nc: Any = None

    async def _client(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            # One try per send (the outbox retries with its own backoff); nats-py's own reconnect
            # would hold a send for long (and max_reconnect_attempts=0 means "forever" to it).
            self._nc = await nats.connect(
                self._cfg.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1,
                reconnect_time_wait=0.1, error_cb=_quiet,
            )
        return self._nc

    async def send(self, batch: Sequence[Claimed]) -> Sent:
        try:
            nc = await self._client()
            for ev in batch:
                await nc.publish(self._cfg.subject, ev.body.encode(), headers={"Nats-Msg-Id": ev.id})
            await nc.flush(timeout=5)
        except (NatsError, OSError, TimeoutError) as exc:
            await self._drop()
            return Sent(0, DeliveryError(f"NATS {self._cfg.url}: {type(exc).__name__}: {exc}"))
        return Sent(len(batch))

    async def _drop(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone anyway
                await nc.close()

    async def close(self) -> None:
        await self._drop()
