"""Build the alert engine of a runtime from its config (only when ``alerts`` are configured)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fluxway.events.alerts.engine import AlertEngine
from fluxway.events.alerts.store import AlertStore
from fluxway.policy.budget import NANO
from fluxway.routing.breaker import BreakerState
from fluxway.routing.clock import Clock

if TYPE_CHECKING:
    from fluxway.policy.keys import BudgetLine
    from fluxway.runtime import Runtime


def build_alerts(rt: Runtime, *, clock: Clock = time.time) -> AlertEngine:
    cfg = rt.cfg
    gov = rt.governance
    board = rt.executor.board
    configured = rt.executor.configured_targets
    target_models: dict[str, set[str]] = {}
    for name, route in rt.executor.routes.items():
        for t in route.targets:
            target_models.setdefault(t.key, set()).add(name)

    async def budget_use(line: BudgetLine, now: float) -> float:
        if line.amount_usd <= 0:
            return 0.0
        spent, reserved = await gov.budget.ledger.state(line, gov.clock())
        return (spent + reserved) / NANO / line.amount_usd

    def breakers() -> Mapping[str, bool]:
        snap = board.snapshot(configured)
        return {k: snap.target(k).state is BreakerState.OPEN for k in configured}

    return AlertEngine(
        cfg.alerts,
        cfg.observability.alerting,
        AlertStore(gov.store.engine),
        events=lambda: rt.events,  # read at each transition: the bus may be set after this
        budget_use=budget_use,
        breakers=breakers,
        target_models={k: frozenset(v) for k, v in target_models.items()},
        clock=clock,
    )
