"""One circuit breaker (per target or per provider key) with its cool-down and outcome counts.

CLOSED -> OPEN after ``failure_threshold`` consecutive failures, or when the failure rate over the
sliding window reaches ``failure_rate`` with at least ``min_volume`` outcomes -> HALF_OPEN once the
cool-down has passed (``open_cooldown_s``, doubled on each trip that follows a failed probe, up to
``max_open_cooldown_s``) -> CLOSED when a probe succeeds, OPEN again when it fails. At most
``half_open_probes`` requests are in flight while half-open. Outcomes of requests admitted under an
earlier state (a different ``epoch``) update statistics but never move the breaker.
"""

from __future__ import annotations

import math
from enum import StrEnum

from fluxway.canonical import ErrorKind
from fluxway.routing.health_settings import HealthSettings


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"



class OutcomeWindow:
    """Outcome counts over the last ``buckets`` buckets of ``width`` seconds (the current one included)."""

    __slots__ = ("_fail", "_n", "_stamp", "_total", "_width")

    def __init__(self, window_s: float, buckets: int) -> None:
        self._width = window_s / buckets
        self._n = buckets
        self._stamp = [-(1 << 62)] * buckets
        self._total = [0] * buckets
        self._fail = [0] * buckets

    def add(self, now: float, failed: bool) -> None:
        b = math.floor(now / self._width)
        i = b % self._n
        if self._stamp[i] != b:
            self._stamp[i] = b
            self._total[i] = 0
            self._fail[i] = 0
        self._total[i] += 1
        if failed:
            self._fail[i] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(outcomes, failures) in the window ending at ``now``."""
        oldest = math.floor(now / self._width) - self._n + 1
        total = fail = 0
        for i in range(self._n):
            if self._stamp[i] >= oldest:
                total += self._total[i]
                fail += self._fail[i]
        return total, fail

    def clear(self) -> None:
        for i in range(self._n):
            self._stamp[i] = -(1 << 62)
            self._total[i] = 0
            self._fail[i] = 0


class BreakerCell:
    """The breaker, cool-down and counters of one target or one key."""

    __slots__ = (
        "consecutive",
        "cooldown_until",
        "epoch",
        "in_flight",
        "last_error",
        "last_failure_at",
        "last_success_at",
        "open_until",
        "probes",
        "state",
        "trips",
        "window",
    )

    def __init__(self, settings: HealthSettings) -> None:
        self.state = BreakerState.CLOSED
        self.epoch = 0
        self.open_until = 0.0
        self.trips = 0  # trips since the breaker last closed
        self.consecutive = 0
        self.window = OutcomeWindow(settings.window_s, settings.window_buckets)
        self.probes = 0
        self.cooldown_until = 0.0
        self.in_flight = 0
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: ErrorKind | None = None

    def advance(self, now: float) -> None:
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self._half_open()

    def _half_open(self) -> None:
        self.state = BreakerState.HALF_OPEN
        self.epoch += 1
        self.probes = 0

    def admit(self, now: float, force: bool, max_probes: int) -> tuple[bool, bool]:
        """(admitted, as_probe). ``force`` skips what is left of an open breaker's cool-down."""
        self.advance(now)
        if self.state is BreakerState.CLOSED:
            return True, False
        if self.state is BreakerState.OPEN:
            if not force:
                return False, False
            self._half_open()
        if self.probes < max_probes:
            self.probes += 1
            return True, True
        return False, False

    def usable(self, now: float, max_probes: int) -> bool:
        self.advance(now)
        if self.cooldown_until > now:
            return False
        return self.state is BreakerState.CLOSED or (self.state is BreakerState.HALF_OPEN and self.probes < max_probes)

    def recovers_at(self, now: float) -> float:
        t = max(now, self.cooldown_until)
        if self.state is BreakerState.OPEN:
            t = max(t, self.open_until)
        return t

    def trip(self, now: float, settings: HealthSettings) -> None:
        self.trips += 1
        self.state = BreakerState.OPEN
        self.open_until = now + settings.open_cooldown(self.trips)
        self.epoch += 1
        self.probes = 0
        self.consecutive = 0

    def close(self) -> None:
        self.state = BreakerState.CLOSED
        self.epoch += 1
        self.probes = 0
        self.trips = 0
        self.consecutive = 0
        self.window.clear()

    def success(self, now: float, epoch: int) -> None:
        self.last_success_at = now
        self.advance(now)
        if epoch != self.epoch:
            return
        if self.state is BreakerState.HALF_OPEN:
            self.close()
        elif self.state is BreakerState.CLOSED:
            self.consecutive = 0
            self.window.add(now, False)

    def alive(self, now: float, epoch: int) -> None:
        """The upstream answered but refused the request itself: only a probe learns anything."""
        self.advance(now)
        if epoch == self.epoch and self.state is BreakerState.HALF_OPEN:
            self.close()

    def failure(self, now: float, epoch: int, kind: ErrorKind, settings: HealthSettings, trip_now: bool) -> None:
        self.last_failure_at = now
        self.last_error = kind
        self.advance(now)
        if epoch != self.epoch:
            return
        if self.state is BreakerState.HALF_OPEN:
            self.trip(now, settings)
        elif self.state is BreakerState.CLOSED:
            self.consecutive += 1
            self.window.add(now, True)
            if trip_now or self.consecutive >= settings.failure_threshold:
                self.trip(now, settings)
                return
            total, failed = self.window.counts(now)
            if total >= settings.min_volume and failed >= settings.failure_rate * total:
                self.trip(now, settings)

    def cool(self, until: float) -> None:
        self.cooldown_until = max(self.cooldown_until, until)
