"""Immutable views of the health board: one target, one key, a whole snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from fluxway.canonical import ErrorKind
from fluxway.routing.breaker import BreakerState


class TargetHealth(NamedTuple):
    """One target as of a snapshot. Times are the board's clock.

    (A named tuple rather than a frozen dataclass: one is built per target per request, and this is
    about ten times cheaper to build.)
    """

    key: str
    state: BreakerState = BreakerState.CLOSED
    open_until: float | None = None  # set while OPEN
    cooldown_until: float | None = None  # rate-limit / overload cool-down, or every key unusable
    probe_available: bool = True  # a half-open breaker has a free probe slot
    probes_in_flight: int = 0
    in_flight: int = 0
    consecutive_failures: int = 0
    window_requests: int = 0
    window_failures: int = 0
    trips: int = 0
    ewma_ttfb_s: float | None = None
    ewma_total_s: float | None = None
    p95_ttfb_s: float | None = None
    latency_samples: int = 0
    last_latency_at: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_error: ErrorKind | None = None

    def breaker_allows(self, now: float) -> bool:
        """Would the breaker let a request through at ``now``?"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN:
            return self.probe_available
        return self.open_until is not None and now >= self.open_until

    def cooling(self, now: float) -> bool:
        return self.cooldown_until is not None and self.cooldown_until > now

    def usable(self, now: float) -> bool:
        return self.breaker_allows(now) and not self.cooling(now)

    def recovers_at(self, now: float) -> float:
        """The earliest time this target may be usable again (``now`` if it is usable)."""
        t = now
        if self.state is BreakerState.OPEN and self.open_until is not None:
            t = max(t, self.open_until)
        if self.cooldown_until is not None:
            t = max(t, self.cooldown_until)
        return t

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.key,
            "state": self.state.value,
            "open_until": self.open_until,
            "cooldown_until": self.cooldown_until,
            "probes_in_flight": self.probes_in_flight,
            "in_flight": self.in_flight,
            "consecutive_failures": self.consecutive_failures,
            "window_requests": self.window_requests,
            "window_failures": self.window_failures,
            "trips": self.trips,
            "ewma_ttfb_ms": _ms(self.ewma_ttfb_s),
            "ewma_total_ms": _ms(self.ewma_total_s),
            "p95_ttfb_ms": _ms(self.p95_ttfb_s),
            "latency_samples": self.latency_samples,
            "last_success_at": self.last_success_at,
            "last_failure_at": self.last_failure_at,
            "last_error": self.last_error.value if self.last_error else None,
        }


@dataclass(frozen=True, slots=True)
class KeyHealth:
    """One API key of a provider as of a snapshot (the key itself is never shown)."""

    provider: str
    index: int
    state: BreakerState = BreakerState.CLOSED
    open_until: float | None = None
    cooldown_until: float | None = None
    in_flight: int = 0
    consecutive_failures: int = 0
    trips: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_error: ErrorKind | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state.value,
            "open_until": self.open_until,
            "cooldown_until": self.cooldown_until,
            "in_flight": self.in_flight,
            "consecutive_failures": self.consecutive_failures,
            "trips": self.trips,
            "last_success_at": self.last_success_at,
            "last_failure_at": self.last_failure_at,
            "last_error": self.last_error.value if self.last_error else None,
        }


_NO_TARGETS: Mapping[str, TargetHealth] = MappingProxyType({})
_NO_KEYS: Mapping[str, tuple[KeyHealth, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """An immutable view of the board at ``at``; targets it has never seen read as fresh and healthy."""

    at: float
    targets: Mapping[str, TargetHealth] = field(default_factory=lambda: _NO_TARGETS)
    keys: Mapping[str, tuple[KeyHealth, ...]] = field(default_factory=lambda: _NO_KEYS)

    def target(self, key: str) -> TargetHealth:
        found = self.targets.get(key)
        return found if found is not None else TargetHealth(key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``/admin/providers``)."""
        return {
            "at": self.at,
            "targets": [self.targets[k].to_dict() for k in sorted(self.targets)],
            "keys": {p: [k.to_dict() for k in ks] for p, ks in sorted(self.keys.items())},
        }


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 3)
