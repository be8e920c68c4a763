"""Routing: pure planning (:mod:`.plan`) and health bookkeeping (:mod:`.health`); the executor
(:mod:`.executor`, which does I/O) is imported from its own module, never from here."""

from fluxway.routing.clock import Clock, ManualClock
from fluxway.routing.health import (
    BreakerState,
    HealthBoard,
    HealthSettings,
    HealthSnapshot,
    KeyHealth,
    Permit,
    TargetHealth,
)
from fluxway.routing.plan import (
    PlannerState,
    backoff_s,
    context_fallback_chain,
    hedge_delay_s,
    plan,
    plan_fallback_chain,
)

__all__ = [
    "BreakerState",
    "Clock",
    "HealthBoard",
    "HealthSettings",
    "HealthSnapshot",
    "KeyHealth",
    "ManualClock",
    "Permit",
    "PlannerState",
    "TargetHealth",
    "backoff_s",
    "context_fallback_chain",
    "hedge_delay_s",
    "plan",
    "plan_fallback_chain",
]
