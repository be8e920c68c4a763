"""Webhook sink: each event POSTed as its JSON body, signed ``x-fluxway-signature: sha256=<hex>``
(HMAC-SHA256 of the raw body with the sink's secret), with ``x-fluxway-event-id`` for de-duplication.

2xx delivers; 5xx, 408, 429, timeouts and connection errors are retried; any other status refuses
the event for good.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import aiohttp

from fluxway.events.settings import WebhookSink
from fluxway.events.sinks.base import DeliveryError, Sent
from fluxway.store.outbox import Claimed

_RETRY_4XX = frozenset({408, 429})


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDelivery:
    def __init__(self, cfg: WebhookSink) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post(self, ev: Claimed) -> None:
        body = ev.body.encode()
        headers = {
            **self._cfg.headers,
            "content-type": "application/json",
            "user-agent": "fluxway-events",
            "x-fluxway-event-id": ev.id,
            "x-fluxway-event-type": ev.type,
            "x-fluxway-signature": signature(self._cfg.secret, body),
        }
        try:
            async with self._client().post(self._cfg.url, data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"POST {self._cfg.url}: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRY_4XX
        raise DeliveryError(f"POST {self._cfg.url}: HTTP {status}", retryable=retryable)

    async def send(self, batch: Sequence[Claimed]) -> Sent:
        for i, ev in enumerate(batch):
            try:
                await self.post(ev)
            except DeliveryError as err:
                return Sent(i, err)
        return Sent(len(batch))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
