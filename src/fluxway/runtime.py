"""The Runtime: everything one gateway process holds, built from a Config in the app's lifespan.

Nothing here is module-level: tests build as many runtimes as they like, side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxway import tokens
from fluxway.adapters.base import Adapter
from fluxway.adapters.registry import create_adapter
from fluxway.api.admission import Admission
from fluxway.config import Config, config_warnings
from fluxway.observability import RequestStats
from fluxway.policy.hooks import Principal
from fluxway.policy.pipeline import Pipeline
from fluxway.routing.breaker import BreakerState
from fluxway.routing.executor import Executor
from fluxway.transport import Transport

if TYPE_CHECKING:
    from fluxway.events import EventBus
    from fluxway.events.alerts.engine import AlertEngine
    from fluxway.mcp.gateway import McpGateway
    from fluxway.mcp.service import McpService
    from fluxway.policy.governance import Governance
    from fluxway.tracing.spans import Tracer

log = logging.getLogger("fluxway")


@dataclass(slots=True)
class Runtime:
    cfg: Config
    transport: Transport
    executor: Executor
    governance: Governance  # store, keys, limits, budgets, usage records, the admin API
    pipeline: Pipeline
    admission: Admission = field(init=False)
    stats: RequestStats = field(default_factory=RequestStats)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # OpenTelemetry traces (observability.otlp.endpoint set); None: off, and nothing of it is loaded.
    tracer: Tracer | None = None
    # Events to the configured sinks (the ``events`` config section); None: none configured.
    events: EventBus | None = None
    # Anomaly alerts (the ``alerts`` config section); None: none configured, and the call feed is
    # one None check.
    alerts: AlertEngine | None = None
    # Upstream MCP servers and the tool registry (``mcp.servers`` configured, or /mcp called);
    # None: neither, and nothing of the MCP SDK is loaded.
    mcp: McpService | None = None
    # Request ids: a random per-process prefix and a counter (no syscall per request).
    _id_prefix: str = field(default_factory=lambda: os.urandom(6).hex())
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    # What /v1/models says of each served model (x_fluxway), built from the catalog at the first listing.
    _model_facts: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        server = self.cfg.server
        self.admission = Admission(server.max_in_flight, server.max_concurrency_per_key)

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    def model_facts(self) -> dict[str, dict[str, Any]]:
        """Public model -> its catalog facts (capabilities, limits, priced), computed once."""
        if self._model_facts is None:
            from fluxway.api.model_facts import model_facts

            self._model_facts = model_facts(self.cfg, self.governance.pricer.table.catalog)
        return self._model_facts

    def next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):010x}"

    @classmethod
    async def start(cls, cfg: Config, *, freeze_heap: bool = False) -> Runtime:
        # Governance brings the store (SQLAlchemy), Redis and the account models: loaded here, at
        # start-up, so importing the app stays cheap (tests/test_import_cost.py).
        from fluxway.policy.governance import build_governance

        # The vocabularies Fluxway counts these models' tokens with, loaded before the first call.
        await asyncio.to_thread(tokens.warm, [t.model for m in cfg.models for t in m.targets])
        adapters: dict[str, Adapter] = {p.name: create_adapter(p) for p in cfg.providers}
        gov = await build_governance(cfg)  # store, keys, limits, budgets, usage records, admin API
        pricer = gov.pricer
        transport = Transport()
        executor = Executor(
            cfg, adapters, transport,
            price_of=lambda t: (info.price if (info := pricer.for_target(t)).known else None),
        )
        try:
            await gov.start()
        except BaseException:
            await transport.close()
            raise
        rt = cls(cfg, transport, executor, gov, Pipeline.from_config(cfg.pipeline, gov.stages))
        if cfg.events:
            await rt._start_events()
        if cfg.observability.otlp.endpoint:
            from fluxway.tracing import start_tracing

            rt.tracer = await start_tracing(cfg)
        if cfg.alerts:
            from fluxway.events.alerts.build import build_alerts

            rt.alerts = gov.alerts = build_alerts(rt)
            rt.tasks.append(asyncio.create_task(rt.alerts.run(), name="fluxway-alerts"))
        if cfg.mcp.servers:
            rt.mcp_service()  # every server connects in the background: none holds start-up
        if any(p.health_check for p in cfg.providers):
            rt.tasks.append(asyncio.create_task(executor.run_health_checks(), name="fluxway-health-checks"))
        if freeze_heap:
            # A server process: what start-up built lives as long as the process, so move it out of
            # the collector's reach; full collections under load then walk only per-request garbage
            # (c=32 p99 about 77 ms -> 30 ms on the JSON bench). Not for embedded use (tests).
            gc.collect()
            gc.freeze()
        for warning in config_warnings(cfg):
            log.warning("config: %s", warning)
        log.info(
            "fluxway runtime ready: %d providers, %d models", len(cfg.providers), len(cfg.models)
        )
        return rt

    async def _start_events(self) -> None:
        """The outbox and its sinks (their client libraries loaded now), and the producers wired to it."""
        from fluxway.events.outbox import start_outbox

        gov = self.governance
        box = await start_outbox(gov.store.outbox, self.cfg.events, self.stats, self.cfg.redis.url)
        self.events = box
        gov.attach_events(box)

        def breaker(target: str, state: BreakerState) -> None:
            provider, _, model = target.partition("/")
            kind = "breaker.opened" if state is BreakerState.OPEN else "breaker.closed"
            box.emit(kind, {"target": target, "provider": provider, "model": model, "state": state.value})

        self.executor.board.on_transition = breaker

    def mcp_service(self) -> McpService:
        """The MCP servers and their tool registry (built, and its servers started, on first use)."""
        if self.mcp is None:
            from fluxway.mcp.service import start_mcp

            self.mcp = start_mcp(self)
        return self.mcp

    async def mcp_gateway(self) -> McpGateway:
        """The /mcp server, built and started on the first /mcp request."""
        service = self.mcp_service()
        if service.gateway is None:
            from fluxway.mcp.gateway import McpGateway

            gateway = McpGateway(service, self.next_request_id, self.cfg.mcp.max_body_bytes)
            await gateway.start()
            if service.gateway is None:
                service.gateway = gateway
            else:  # another request started one meanwhile
                await gateway.close()
        gw: McpGateway = service.gateway
        return gw

    async def principal(self, api_key: str | None) -> Principal:
        """Who a key belongs to (for routes outside the hook pipeline, like /v1/models)."""
        return await self.governance.auth.resolve(api_key)

    def unhealthy_models(self) -> list[str]:
        """Public models none of whose targets has a closed or half-open breaker."""
        board = self.executor.board
        out = []
        for name, route in self.executor.routes.items():
            snap = board.snapshot([t.key for t in route.targets])
            if all(snap.target(t.key).state is BreakerState.OPEN for t in route.targets):
                out.append(name)
        return out

    def ready(self) -> dict[str, bool]:
        checks = {"targets": not self.unhealthy_models(), **self.governance.ready()}
        if self.mcp is not None and self.mcp.upstreams:  # a server down: reported as degraded
            checks["mcp"] = self.mcp.all_up
        return checks

    async def close(self) -> None:
        # Calls the server just cut at the end of its drain (server.drain_s) still write their
        # (partial) usage records; give them a moment before the recorder's final flush.
        for _ in range(200):
            if self.admission.in_flight <= 0:
                break
            await asyncio.sleep(0.01)
        if self.mcp is not None:
            await self.mcp.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.governance.close()  # flushes usage records
        if self.tracer is not None:
            await self.tracer.close()  # sends the spans still waiting
        await self.transport.close()
