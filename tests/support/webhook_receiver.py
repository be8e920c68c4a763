"""A webhook receiver for the event tests: checks each delivery's ``x-fluxway-signature`` against
the raw body, answers ``fail`` (a status, 503 by default) to the first ``fail_first`` deliveries, and
keeps what it accepted de-duplicated by ``x-fluxway-event-id`` (as a real receiver should)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support.upstream import FakeUpstream


@dataclass
class WebhookReceiver:
    secret: str
    fail_first: int = 0
    fail: int = 503
    up: FakeUpstream = field(default_factory=FakeUpstream)
    attempts: list[str] = field(default_factory=list)  # event id of every delivery tried, failed ones too
    bad_signatures: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> event, first accepted
    duplicates: int = 0  # accepted deliveries of an event already accepted

    @property
    def url(self) -> str:
        return self.up.url + "/hook"

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if e["type"] == type_]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-fluxway-signature", ""), want):
            self.bad_signatures += 1
            return web.Response(status=401)
        eid = request.headers["x-fluxway-event-id"]
        self.attempts.append(eid)
        if len(self.attempts) <= self.fail_first:
            return web.Response(status=self.fail)
        event = orjson.loads(body)
        assert event["id"] == eid
        if eid in self.events:
            self.duplicates += 1
        else:
            self.events[eid] = event
        return web.Response(status=204)


@asynccontextmanager
async def webhook_receiver(
    secret: str = "s3cret", *, fail_first: int = 0, fail: int = 503
) -> AsyncIterator[WebhookReceiver]:
    rx = WebhookReceiver(secret, fail_first, fail)
    async with rx.up:
        rx.up.route("POST", "/hook", rx.handle)
        yield rx
