"""The batch exporter: ended spans wait in a bounded queue and a background task POSTs them to the
collector as OTLP/HTTP protobuf (``<endpoint>/v1/traces``).

``submit`` only appends to a list (or counts a drop when the queue is full): serving never waits for
the collector. The task wakes every ``flush_interval_ms`` or as soon as a batch is full; a failed
export is counted and dropped (not retried: fresh spans matter more than old ones). ``close`` sends
what is left, within ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fluxway import __version__
from fluxway.config_observability import OtlpConfig
from fluxway.tracing.genai import AttrValue
from fluxway.tracing.otlp import SCOPE_NAME
from fluxway.tracing.spans import Span
from fluxway.tracing.wire import AttrCache, encode

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("fluxway.tracing")

_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """``endpoint`` is the collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT); a URL already
    ending in ``/v1/traces`` is taken as it is."""
    base = endpoint.rstrip("/")
    return base if base.endswith(_PATH) else base + _PATH


def resource_attributes(service_name: str) -> dict[str, AttrValue]:
    return {
        "service.name": service_name,
        "service.version": __version__,
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}",
        "telemetry.sdk.name": "fluxway",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }


class BatchExporter:
    """A :class:`~fluxway.tracing.spans.SpanSink` that exports over OTLP/HTTP in the background."""

    def __init__(self, cfg: OtlpConfig, resource: Mapping[str, AttrValue] | None = None) -> None:
        if not cfg.endpoint:
            raise ValueError("observability.otlp.endpoint is not set")
        self.url = traces_url(cfg.endpoint)
        self._cfg = cfg
        self._resource = dict(resource or resource_attributes(cfg.service_name))
        self._headers = {"content-type": "application/x-protobuf", **cfg.headers}
        self._queue: list[Span] = []
        self._cache = AttrCache()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failing = False
        self._closing = False
        # Counters (spans): sent and accepted, dropped with the queue full, lost in a failed export.
        self.exported = 0
        self.dropped = 0
        self.failed = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def counts(self) -> dict[str, int]:
        return {"exported": self.exported, "dropped": self.dropped, "failed": self.failed, "queued": self.queued}

    def submit(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= self._cfg.max_queue:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) >= self._cfg.batch_size:
            self._wake.set()

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._cfg.timeout_s))
        self._task = asyncio.create_task(self._run(), name="fluxway-otlp-export")

    async def _run(self) -> None:
        interval = self._cfg.flush_interval_ms / 1000.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self.flush()
            if self._closing:
                return

    async def flush(self) -> None:
        """Export everything waiting now, batch by batch."""
        while self._queue:
            n = self._cfg.batch_size
            batch = self._queue[:n]
            del self._queue[:n]
            await self._post(batch)

    async def _post(self, batch: list[Span]) -> None:
        session = self._session
        if session is None:
            self.failed += len(batch)
            return
        try:
            body = encode(batch, self._resource, (SCOPE_NAME, __version__), self._cache)
            async with session.post(self.url, data=body, headers=self._headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                why = f"HTTP {resp.status}"
        except asyncio.CancelledError:
            self.failed += len(batch)
            raise
        except Exception as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.exported += len(batch)
            if self._failing:
                self._failing = False
                log.info("trace export to %s recovered", self.url)
            return
        self.failed += len(batch)
        if not self._failing:  # one line per outage, not one per batch
            self._failing = True
            log.warning("trace export to %s failed (%s); spans are dropped until it answers", self.url, why)

    async def close(self) -> None:
        """Send what is waiting (within ``timeout_s``), then stop."""
        task, self._task = self._task, None
        self._closing = True
        self._wake.set()
        try:
            if task is not None:
                try:
                    await asyncio.wait_for(task, self._cfg.timeout_s)
                except TimeoutError:
                    log.warning("trace export: %d spans not sent at shutdown", len(self._queue))
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None
