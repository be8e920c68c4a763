"""The Runtime: everything one gateway process holds, built from a Config in the app's lifespan.

Nothing here is module-level: tests build as many runtimes as they like, side by side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fluxway.adapters.base import Adapter
from fluxway.adapters.registry import create_adapter
from fluxway.config import Config
from fluxway.policy.auth import MasterKeyAuth
from fluxway.policy.hooks import Hook, Principal
from fluxway.routing.executor import Executor
from fluxway.transport import Transport

log = logging.getLogger("fluxway")


@dataclass(slots=True)
class Runtime:
    cfg: Config
    transport: Transport
    executor: Executor
    hooks: list[Hook]
    auth: MasterKeyAuth
    in_flight: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def start(cls, cfg: Config) -> Runtime:
        adapters: dict[str, Adapter] = {p.name: create_adapter(p) for p in cfg.providers}
        transport = Transport()
        executor = Executor(cfg, adapters, transport)
        auth = MasterKeyAuth(cfg.auth.master_key)
        hooks: list[Hook] = [auth]
        rt = cls(cfg, transport, executor, hooks, auth)
        log.info(
            "fluxway runtime ready: %d providers, %d models", len(cfg.providers), len(cfg.models)
        )
        return rt

    async def principal(self, api_key: str | None) -> Principal:
        """Who a key belongs to (for routes outside the hook pipeline, like /v1/models)."""
        return await self.auth.resolve(api_key)

    def ready(self) -> dict[str, bool]:
        return {"targets": bool(self.cfg.models) or bool(self.cfg.providers)}

    async def close(self) -> None:
        await self.transport.close()
