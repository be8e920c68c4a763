"""Routing: pure planning (:mod:`.plan`) and health bookkeeping (:mod:`.health`, with :mod:`.breaker`,
:mod:`.latency`, :mod:`.health_settings` and :mod:`.health_views`); the executor
(:mod:`.executor`, which does I/O) is imported from its own module, never from here."""

from fluxway.routing.breaker import BreakerState
from fluxway.routing.clock import Clock, ManualClock
from fluxway.routing.health import HealthBoard, Permit
from fluxway.routing.health_settings import HealthSettings
from fluxway.routing.health_views import HealthSnapshot, KeyHealth, TargetHealth
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
