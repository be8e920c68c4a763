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

Breakers (per target and per key) are :mod:`.breaker`; their settings :mod:`.health_settings`;
latency statistics :mod:`.latency`; the immutable views the board hands out :mod:`.health_views`.

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

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

from fluxway.canonical import ErrorKind
from fluxway.routing.breaker import BreakerCell, BreakerState
from fluxway.routing.clock import Clock
from fluxway.routing.health_settings import HealthSettings
from fluxway.routing.health_views import HealthSnapshot, KeyHealth, TargetHealth
from fluxway.routing.latency import LatencyStats

# BreakerState and HealthSettings are part of the board's interface (its settings, its views' states).
__all__ = [
    "DEFAULT_MAX_DYNAMIC",
    "KEY_KINDS",
    "TARGET_KINDS",
    "HealthBoard",
    "Permit",
    "provider_of",
]

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
        self._targets: dict[str, BreakerCell] = {}
        self._latency: dict[str, LatencyStats] = {}
        self._keys: dict[tuple[str, int], BreakerCell] = {}
        self._n_keys: dict[str, int] = {}
        self._rr: dict[str, int] = {}
        self._troubled: set[str] = set()  # providers one of whose keys has ever failed
        # Told (target key, new state) when a target's breaker opens (from closed) or closes again:
        # the runtime's events (breaker.opened / breaker.closed). None: nobody listens.
        self.on_transition: Callable[[str, BreakerState], None] | None = None

    # -- cells ------------------------------------------------------------------------------------

    def _target(self, key: str) -> BreakerCell:
        cell = self._targets.get(key)
        if cell is None:
            cell = self._targets[key] = BreakerCell(self.settings)
            self._latency[key] = LatencyStats()
            if key not in self._pinned:
                self._dynamic[key] = None
                if len(self._dynamic) > self._max_dynamic:
                    old, _ = self._dynamic.popitem(last=False)
                    del self._targets[old]
                    del self._latency[old]
        elif key in self._dynamic:
            self._dynamic.move_to_end(key)
        return cell

    def _lat(self, key: str) -> LatencyStats:
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

    def _key(self, provider: str, index: int) -> BreakerCell:
        cell = self._keys.get((provider, index))
        if cell is None:
            cell = self._keys[(provider, index)] = BreakerCell(self.settings)
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
        cell = self._target(permit.target_key)
        before = cell.state
        cell.success(now, permit.epoch)
        if cell.state is not before and self.on_transition is not None:
            self._transition(permit.target_key, before, cell.state)
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
            cell = self._target(permit.target_key)
            before = cell.state
            cell.success(now, permit.epoch)
            if cell.state is not before and self.on_transition is not None:
                self._transition(permit.target_key, before, cell.state)
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
        before = cell.state
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
        if cell.state is not before and self.on_transition is not None:
            self._transition(permit.target_key, before, cell.state)
        self.release(permit)

    def _transition(self, key: str, before: BreakerState, after: BreakerState) -> None:
        """Report a breaker that opened from closed, or closed from open or half-open."""
        assert self.on_transition is not None
        if (after is BreakerState.OPEN and before is BreakerState.CLOSED) or (
            after is BreakerState.CLOSED and before is not BreakerState.CLOSED
        ):
            with contextlib.suppress(Exception):  # a listener's fault never breaks routing
                self.on_transition(key, after)

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
