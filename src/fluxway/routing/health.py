"""Provider health: circuit breakers, rate-limit cool-downs, latency statistics, in-flight counts.

One :class:`HealthBoard` per runtime holds a cell per target (``Target.key``, "provider/model") and a
cell per provider API key (provider, key index). It does no I/O and reads time only from the clock it
is given. The executor uses it like this::

    permit = board.acquire(target.key, n_keys=len(provider.api_keys))
    if permit is None:                 # breaker open, or its half-open probe slots are taken
        continue                       # (if every planned target refuses: acquire(plan[0].key, force=True))
    try:
        creds = keys[permit.key_index] if permit.key_index is not None else no_key
        ...send...                     # streams: board.record_first_byte(permit) on the first chunk
        board.record_success(permit)   # durations default to the clock's view since acquire
    except UpstreamError as err:
        board.record_failure(permit, err.kind, err.retry_after)
    finally:
        board.release(permit)          # idempotent; record_success/record_failure already release

Breaker (per target and per key): CLOSED -> OPEN after ``failure_threshold`` consecutive failures, or
when the failure rate over the sliding window reaches ``failure_rate`` with at least ``min_volume``
outcomes -> HALF_OPEN once the cool-down has passed (``open_cooldown_s``, doubled on each trip that
follows a failed probe, up to ``max_open_cooldown_s``) -> CLOSED when a probe succeeds, OPEN again when
it fails. At most ``half_open_probes`` requests are in flight while half-open. Outcomes of requests
admitted under an earlier state (a different ``epoch``) update statistics but never move the breaker.

What counts against what:
  * target: rate_limited, overloaded, timeout, upstream_5xx, connect, protocol, not_found
    (and auth when the provider has no keys);
  * key: auth (trips the key at once by default) and rate_limited;
  * neither: bad_request, content_filter, context_length — the upstream answered, the request was at
    fault. Such an answer to a half-open probe proves the target alive and closes its breaker.
A rate_limited answer cools its key (or the target, if keyless) until ``retry_after`` (default
``rate_limit_cooldown_s``); an overloaded answer with a ``retry_after`` cools the target. When every key
of a provider is cooling or open, the provider's targets report that as their ``cooldown_until``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from fluxway.canonical import ErrorKind
from fluxway.routing.clock import Clock

TARGET_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.UPSTREAM_5XX,
        ErrorKind.CONNECT,
        ErrorKind.PROTOCOL,
        ErrorKind.NOT_FOUND,
    }
)
# Unconfigured targets (direct names) the board remembers at most, least recently used evicted.
DEFAULT_MAX_DYNAMIC = 1024
KEY_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.RATE_LIMITED})


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    failure_threshold: int = 5  # consecutive failures that open a breaker
    window_s: float = 30.0  # sliding window of the failure-rate rule
    window_buckets: int = 10  # the window's resolution (window_s / window_buckets seconds)
    failure_rate: float = 0.5  # failure share in the window that opens a breaker ...
    min_volume: int = 10  # ... once the window holds at least this many outcomes
    open_cooldown_s: float = 10.0  # first open period
    cooldown_growth: float = 2.0  # each trip after a failed probe multiplies it
    max_open_cooldown_s: float = 300.0
    half_open_probes: int = 1  # requests let through at once while half-open
    rate_limit_cooldown_s: float = 5.0  # after a 429 without retry-after
    max_rate_limit_cooldown_s: float = 300.0  # a retry-after longer than this is clipped
    auth_trips_key: bool = True  # one auth failure opens that key's breaker
    ewma_alpha: float = 0.3  # weight of the newest latency sample
    latency_samples: int = 128  # ring buffer for the TTFB p95
    p95_min_samples: int = 10  # no p95 is reported before this many samples
    p95_refresh: int = 8  # the p95 is re-sorted after this many new samples (1: always exact)

    def __post_init__(self) -> None:
        problems = []
        if self.failure_threshold < 1:
            problems.append("failure_threshold must be >= 1")
        if self.window_s <= 0 or self.window_buckets < 1:
            problems.append("window_s must be > 0 and window_buckets >= 1")
        if not 0 < self.failure_rate <= 1:
            problems.append("failure_rate must be in (0, 1]")
        if self.min_volume < 1:
            problems.append("min_volume must be >= 1")
        if self.open_cooldown_s < 0 or self.max_open_cooldown_s < self.open_cooldown_s:
            problems.append("open_cooldown_s must be >= 0 and <= max_open_cooldown_s")
        if self.cooldown_growth < 1:
            problems.append("cooldown_growth must be >= 1")
        if self.half_open_probes < 1:
            problems.append("half_open_probes must be >= 1")
        if self.rate_limit_cooldown_s < 0 or self.max_rate_limit_cooldown_s < 0:
            problems.append("rate-limit cool-downs must be >= 0")
        if not 0 < self.ewma_alpha <= 1:
            problems.append("ewma_alpha must be in (0, 1]")
        if self.latency_samples < 1 or self.p95_min_samples < 1 or self.p95_refresh < 1:
            problems.append("latency_samples, p95_min_samples and p95_refresh must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def open_cooldown(self, trips: int) -> float:
        """How long the ``trips``-th consecutive trip keeps a breaker open."""
        if trips <= 1:
            return self.open_cooldown_s
        # Cap the exponent: growth ** huge would overflow long after the cap is reached anyway.
        return min(self.max_open_cooldown_s, self.open_cooldown_s * self.cooldown_growth ** min(trips - 1, 64))


# ---------------------------------------------------------------------------------------------
# Immutable views


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


# ---------------------------------------------------------------------------------------------
# Mutable internals


class _Window:
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


class _Latency:
    __slots__ = ("_p95", "_p95_count", "_pos", "_ring", "count", "ewma_total", "ewma_ttfb", "last_at")

    def __init__(self) -> None:
        self.ewma_ttfb: float | None = None
        self.ewma_total: float | None = None
        self.count = 0  # TTFB samples ever taken
        self.last_at: float | None = None
        self._ring: list[float] = []
        self._pos = 0
        self._p95: float | None = None  # cached ...
        self._p95_count = 0  # ... as of this many samples

    def add_ttfb(self, now: float, seconds: float, alpha: float, size: int) -> None:
        seconds = max(0.0, seconds)
        self.ewma_ttfb = seconds if self.ewma_ttfb is None else self.ewma_ttfb + alpha * (seconds - self.ewma_ttfb)
        if len(self._ring) < size:
            self._ring.append(seconds)
        else:
            self._ring[self._pos] = seconds
            self._pos = (self._pos + 1) % size
        self.count += 1
        self.last_at = now

    def add_total(self, now: float, seconds: float, alpha: float) -> None:
        seconds = max(0.0, seconds)
        self.ewma_total = seconds if self.ewma_total is None else self.ewma_total + alpha * (seconds - self.ewma_total)
        self.last_at = now

    def p95(self, min_samples: int, refresh: int) -> float | None:
        """Nearest-rank 95th percentile of the samples in the ring, re-sorted every ``refresh`` samples."""
        n = len(self._ring)
        if n < min_samples:
            return None
        if self._p95 is None or self.count - self._p95_count >= refresh:
            self._p95 = sorted(self._ring)[math.ceil(0.95 * n) - 1]
            self._p95_count = self.count
        return self._p95


class _Cell:
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
        self.window = _Window(settings.window_s, settings.window_buckets)
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


@dataclass(slots=True, eq=False)
class Permit:
    """Leave to send one attempt to a target (and which key to sign it with). Hand it back when done."""

    target_key: str
    provider: str
    key_index: int | None
    started_at: float
    probe: bool = False
    epoch: int = 0
    key_probe: bool = False
    key_epoch: int = 0
    first_byte_at: float | None = None
    released: bool = False


def provider_of(target_key: str) -> str:
    """The provider part of a ``Target.key`` ("provider/model"; provider names hold no slash)."""
    return target_key.partition("/")[0]


class HealthBoard:
    """Health of every target and key of one runtime. Single-threaded (one event loop); no I/O."""

    def __init__(
        self,
        clock: Clock,
        settings: HealthSettings | None = None,
        *,
        pinned: Iterable[str] = (),
        max_dynamic: int = DEFAULT_MAX_DYNAMIC,
    ) -> None:
        """``pinned``: the configured targets, kept for good. Any other target (a direct
        ``provider/model`` name from a client) lives in an LRU of ``max_dynamic`` entries, so
        client-chosen names cannot grow the board without bound."""
        self._clock = clock
        self.settings = settings or HealthSettings()
        self._pinned = frozenset(pinned)
        self._max_dynamic = max(1, max_dynamic)
        self._dynamic: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._targets: dict[str, _Cell] = {}
        self._latency: dict[str, _Latency] = {}
        self._keys: dict[tuple[str, int], _Cell] = {}
        self._n_keys: dict[str, int] = {}
        self._rr: dict[str, int] = {}
        self._troubled: set[str] = set()  # providers one of whose keys has ever failed

    # -- cells ------------------------------------------------------------------------------------

    def _target(self, key: str) -> _Cell:
        cell = self._targets.get(key)
        if cell is None:
            cell = self._targets[key] = _Cell(self.settings)
            self._latency[key] = _Latency()
            if key not in self._pinned:
                self._dynamic[key] = None
                if len(self._dynamic) > self._max_dynamic:
                    old, _ = self._dynamic.popitem(last=False)
                    del self._targets[old]
                    del self._latency[old]
        elif key in self._dynamic:
            self._dynamic.move_to_end(key)
        return cell

    def _lat(self, key: str) -> _Latency:
        """The target's latency record (recreated if its cell was evicted while a call ran)."""
        lat = self._latency.get(key)
        if lat is None:
            self._target(key)
            lat = self._latency[key]
        return lat

    def now(self) -> float:
        """The board's clock."""
        return self._clock()

    @property
    def dynamic_targets(self) -> int:
        """How many unconfigured (direct-name) targets the board holds now."""
        return len(self._dynamic)

    def _key(self, provider: str, index: int) -> _Cell:
        cell = self._keys.get((provider, index))
        if cell is None:
            cell = self._keys[(provider, index)] = _Cell(self.settings)
        return cell

    # -- sending ----------------------------------------------------------------------------------

    def acquire(self, target_key: str, *, n_keys: int = 0, force: bool = False) -> Permit | None:
        """May an attempt go to ``target_key`` now? Counts it in flight (and as a probe if half-open).

        With ``n_keys`` > 0 a key is picked too (``permit.key_index``), skipping cooling and open keys
        while any other is usable. ``force`` lets an open breaker through early as a half-open probe:
        for when every planned target is open and one must be tried anyway. Returns None if refused.
        """
        now = self._clock()
        cell = self._target(target_key)
        ok, probe = cell.admit(now, force, self.settings.half_open_probes)
        if not ok:
            return None
        provider = provider_of(target_key)
        permit = Permit(target_key, provider, None, now, probe, cell.epoch)
        cell.in_flight += 1
        if n_keys > 0:
            index = self.pick_key(provider, n_keys)
            kcell = self._key(provider, index)
            # A key is never refused here: if none is usable, the soonest to recover is the last resort.
            kok, kprobe = kcell.admit(now, True, self.settings.half_open_probes)
            permit.key_index = index
            permit.key_probe = kok and kprobe
            permit.key_epoch = kcell.epoch
            kcell.in_flight += 1
        return permit

    def pick_key(self, provider: str, n_keys: int) -> int:
        """Round-robin over the provider's usable keys; the soonest to recover if none is usable."""
        if n_keys <= 0:
            raise ValueError("n_keys must be >= 1")
        now = self._clock()
        self._n_keys[provider] = n_keys
        start = self._rr.get(provider, 0) % n_keys
        chosen = -1
        for off in range(n_keys):
            i = (start + off) % n_keys
            cell = self._keys.get((provider, i))
            if cell is None or cell.usable(now, self.settings.half_open_probes):
                chosen = i
                break
        if chosen < 0:
            chosen = min(
                range(n_keys), key=lambda i: (self._keys[(provider, i)].recovers_at(now), (i - start) % n_keys)
            )
        self._rr[provider] = (chosen + 1) % n_keys
        return chosen

    def release(self, permit: Permit) -> None:
        """The attempt is over (however it ended). Idempotent."""
        if permit.released:
            return
        permit.released = True
        cell = self._targets.get(permit.target_key)
        if cell is not None:
            cell.in_flight = max(0, cell.in_flight - 1)
            if permit.probe and permit.epoch == cell.epoch and cell.probes > 0:
                cell.probes -= 1
        if permit.key_index is not None:
            kcell = self._keys.get((permit.provider, permit.key_index))
            if kcell is not None:
                kcell.in_flight = max(0, kcell.in_flight - 1)
                if permit.key_probe and permit.key_epoch == kcell.epoch and kcell.probes > 0:
                    kcell.probes -= 1

    # -- outcomes ---------------------------------------------------------------------------------

    def record_first_byte(self, permit: Permit, ttfb_s: float | None = None) -> None:
        """A stream produced its first chunk: the upstream is up; one TTFB sample. Does not release."""
        if permit.released or permit.first_byte_at is not None:
            return
        now = self._clock()
        permit.first_byte_at = now
        s = self.settings
        self._lat(permit.target_key).add_ttfb(
            now, now - permit.started_at if ttfb_s is None else ttfb_s, s.ewma_alpha, s.latency_samples
        )
        self._target(permit.target_key).success(now, permit.epoch)
        if permit.key_index is not None:
            self._key(permit.provider, permit.key_index).success(now, permit.key_epoch)

    def record_success(self, permit: Permit, ttfb_s: float | None = None, total_s: float | None = None) -> None:
        """The attempt answered. Durations default to the time since ``acquire`` (TTFB = total when
        not streamed and not given). Releases the permit."""
        if permit.released:
            return
        now = self._clock()
        s = self.settings
        lat = self._lat(permit.target_key)
        total = now - permit.started_at if total_s is None else total_s
        if permit.first_byte_at is None:
            lat.add_ttfb(now, total if ttfb_s is None else ttfb_s, s.ewma_alpha, s.latency_samples)
            self._target(permit.target_key).success(now, permit.epoch)
            if permit.key_index is not None:
                self._key(permit.provider, permit.key_index).success(now, permit.key_epoch)
        lat.add_total(now, total, s.ewma_alpha)
        self.release(permit)

    def record_failure(self, permit: Permit, kind: ErrorKind, retry_after: float | None = None) -> None:
        """The attempt failed with ``kind``. Releases the permit."""
        if permit.released:
            return
        now = self._clock()
        s = self.settings
        cell = self._target(permit.target_key)
        kcell = self._key(permit.provider, permit.key_index) if permit.key_index is not None else None
        if kind in TARGET_KINDS or (kind is ErrorKind.AUTH and kcell is None):
            cell.failure(now, permit.epoch, kind, s, trip_now=False)
        elif kind not in KEY_KINDS:
            cell.alive(now, permit.epoch)
        else:
            cell.last_failure_at = now
            cell.last_error = kind
        if kcell is not None:
            if kind in KEY_KINDS:
                self._troubled.add(permit.provider)
                kcell.failure(now, permit.key_epoch, kind, s, trip_now=kind is ErrorKind.AUTH and s.auth_trips_key)
            elif kind not in TARGET_KINDS:
                kcell.alive(now, permit.key_epoch)
        if kind is ErrorKind.RATE_LIMITED or (kind is ErrorKind.OVERLOADED and retry_after is not None):
            wait = s.rate_limit_cooldown_s if retry_after is None else retry_after
            until = now + min(max(0.0, wait), s.max_rate_limit_cooldown_s)
            if kind is ErrorKind.RATE_LIMITED and kcell is not None:
                kcell.cool(until)
            else:
                cell.cool(until)
        self.release(permit)

    # -- views ------------------------------------------------------------------------------------

    def _keys_blocked_until(self, provider: str, now: float) -> float | None:
        if provider not in self._troubled:
            return None
        n = self._n_keys.get(provider)
        if not n:
            return None
        soonest = math.inf
        for i in range(n):
            cell = self._keys.get((provider, i))
            if cell is None or cell.usable(now, self.settings.half_open_probes):
                return None
            soonest = min(soonest, cell.recovers_at(now))
        return soonest if soonest > now else None

    def _target_view(self, key: str, now: float) -> TargetHealth:
        cell = self._targets.get(key)
        blocked = self._keys_blocked_until(provider_of(key), now)
        if cell is None:
            return TargetHealth(key, cooldown_until=blocked)
        cell.advance(now)
        lat = self._lat(key)
        s = self.settings
        cooldown = cell.cooldown_until if cell.cooldown_until > now else None
        if blocked is not None:
            cooldown = blocked if cooldown is None else max(cooldown, blocked)
        total, failed = cell.window.counts(now)
        return TargetHealth(  # positional: the fields in order (the fast way to build a named tuple)
            key,
            cell.state,
            cell.open_until if cell.state is BreakerState.OPEN else None,
            cooldown,
            cell.probes < s.half_open_probes,
            cell.probes,
            cell.in_flight,
            cell.consecutive,
            total,
            failed,
            cell.trips,
            lat.ewma_ttfb,
            lat.ewma_total,
            lat.p95(s.p95_min_samples, s.p95_refresh),
            lat.count,
            lat.last_at,
            cell.last_success_at,
            cell.last_failure_at,
            cell.last_error,
        )

    def _key_view(self, provider: str, index: int, now: float) -> KeyHealth:
        cell = self._keys.get((provider, index))
        if cell is None:
            return KeyHealth(provider, index)
        cell.advance(now)
        return KeyHealth(
            provider=provider,
            index=index,
            state=cell.state,
            open_until=cell.open_until if cell.state is BreakerState.OPEN else None,
            cooldown_until=cell.cooldown_until if cell.cooldown_until > now else None,
            in_flight=cell.in_flight,
            consecutive_failures=cell.consecutive,
            trips=cell.trips,
            last_success_at=cell.last_success_at,
            last_failure_at=cell.last_failure_at,
            last_error=cell.last_error,
        )

    def target(self, target_key: str) -> TargetHealth:
        """One target's view now."""
        return self._target_view(target_key, self._clock())

    def snapshot(self, target_keys: Iterable[str] | None = None) -> HealthSnapshot:
        """Every known target and key (for ``/admin/providers``), or, for planning, only ``target_keys``.

        A restricted snapshot carries no per-key views (cheaper on the request path); what the keys
        mean for routing is already in each target's ``cooldown_until``.
        """
        now = self._clock()
        if target_keys is not None:
            return HealthSnapshot(now, MappingProxyType({k: self._target_view(k, now) for k in target_keys}))
        targets = {k: self._target_view(k, now) for k in self._targets}
        counts = dict(self._n_keys)
        for p, i in self._keys:
            counts[p] = max(counts.get(p, 0), i + 1)
        key_views = {p: tuple(self._key_view(p, i, now) for i in range(n)) for p, n in sorted(counts.items())}
        return HealthSnapshot(now, MappingProxyType(targets), MappingProxyType(key_views))
