from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxway.canonical import ErrorKind
from fluxway.routing.breaker import BreakerState
from fluxway.routing.clock import ManualClock
from fluxway.routing.health import KEY_KINDS, TARGET_KINDS, HealthBoard, Permit
from fluxway.routing.health_settings import HealthSettings
from fluxway.routing.health_views import TargetHealth

T = "openai/gpt-4o"
U = "anthropic/claude"


def make(**overrides: float) -> tuple[ManualClock, HealthBoard]:
    clock = ManualClock(1000.0)
    return clock, HealthBoard(clock, HealthSettings(**overrides))  # type: ignore[arg-type]


def take(board: HealthBoard, key: str = T, **kw: object) -> Permit:
    permit = board.acquire(key, **kw)  # type: ignore[arg-type]
    assert permit is not None
    return permit


def fail(board: HealthBoard, n: int, kind: ErrorKind = ErrorKind.UPSTREAM_5XX, key: str = T) -> None:
    for _ in range(n):
        board.record_failure(take(board, key), kind)


def succeed(board: HealthBoard, n: int, key: str = T) -> None:
    for _ in range(n):
        board.record_success(take(board, key), 0.1, 0.2)


# -- settings ---------------------------------------------------------------------------------


def test_settings_defaults_match_the_brief() -> None:
    s = HealthSettings()
    assert (s.failure_threshold, s.window_s, s.failure_rate, s.min_volume) == (5, 30.0, 0.5, 10)
    assert (s.open_cooldown_s, s.max_open_cooldown_s, s.half_open_probes) == (10.0, 300.0, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": 0},
        {"window_s": 0},
        {"window_buckets": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"min_volume": 0},
        {"open_cooldown_s": 20, "max_open_cooldown_s": 10},
        {"cooldown_growth": 0.5},
        {"half_open_probes": 0},
        {"rate_limit_cooldown_s": -1},
        {"ewma_alpha": 0},
        {"latency_samples": 0},
        {"p95_refresh": 0},
    ],
)
def test_settings_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthSettings(**bad)  # type: ignore[arg-type]


def test_open_cooldown_grows_exponentially_up_to_the_cap() -> None:
    s = HealthSettings()
    assert [s.open_cooldown(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 300, 300, 300]
    assert s.open_cooldown(10_000) == 300  # no overflow


# -- breaker: closed -> open ------------------------------------------------------------------


def test_opens_after_threshold_consecutive_failures() -> None:
    clock, board = make()
    fail(board, 4)
    assert board.target(T).state is BreakerState.CLOSED
    assert board.target(T).consecutive_failures == 4
    fail(board, 1)
    h = board.target(T)
    assert h.state is BreakerState.OPEN
    assert h.open_until == clock.now + 10
    assert h.trips == 1
    assert board.acquire(T) is None
    assert not h.usable(clock.now) and h.recovers_at(clock.now) == clock.now + 10


def test_a_success_resets_the_consecutive_count() -> None:
    _, board = make()
    fail(board, 4)
    succeed(board, 1)
    assert board.target(T).consecutive_failures == 0
    fail(board, 4)
    assert board.target(T).state is BreakerState.CLOSED


def test_failure_rate_over_the_window_opens_below_the_consecutive_threshold() -> None:
    _, board = make()
    # F F S, three times: 6 failures in 9 outcomes, never 5 in a row, under the minimum volume.
    for _ in range(3):
        fail(board, 2)
        succeed(board, 1)
    h = board.target(T)
    assert (h.state, h.window_requests, h.window_failures) == (BreakerState.CLOSED, 9, 6)
    fail(board, 1)  # 7 of 10 >= 50%
    assert board.target(T).state is BreakerState.OPEN


def test_failure_rate_below_the_threshold_keeps_closed() -> None:
    _, board = make()
    for _ in range(20):  # 1 failure in 3: 33% < 50%
        fail(board, 1)
        succeed(board, 2)
    assert board.target(T).state is BreakerState.CLOSED


def test_exactly_the_failure_rate_opens() -> None:
    _, board = make()
    for _ in range(5):
        succeed(board, 1)
        fail(board, 1)
    assert board.target(T).state is BreakerState.OPEN  # 5 of 10 = 50%


def test_the_window_slides() -> None:
    clock, board = make()
    for _ in range(4):
        fail(board, 1)
        succeed(board, 1)
    assert board.target(T).window_requests == 8
    clock.advance(31)  # past the 30 s window (3 s buckets)
    assert board.target(T).window_requests == 0
    for _ in range(4):
        fail(board, 1)
        succeed(board, 1)
    h = board.target(T)
    assert (h.state, h.window_requests, h.window_failures) == (BreakerState.CLOSED, 8, 4)


def test_the_window_keeps_what_is_recent() -> None:
    clock, board = make()
    fail(board, 3)
    clock.advance(20)
    succeed(board, 1)
    fail(board, 3)
    h = board.target(T)
    assert (h.window_requests, h.window_failures) == (7, 6)


# -- breaker: open -> half-open -> closed / open ------------------------------------------------


def test_half_open_after_the_cooldown_lets_exactly_one_probe_through() -> None:
    clock, board = make()
    fail(board, 5)
    clock.advance(9.99)
    assert board.acquire(T) is None
    clock.advance(0.01)
    h = board.target(T)
    assert h.state is BreakerState.HALF_OPEN and h.probe_available and h.usable(clock.now)
    probe = take(board)
    assert probe.probe
    assert board.acquire(T) is None  # the slot is taken
    h = board.target(T)
    assert (h.probes_in_flight, h.probe_available, h.in_flight) == (1, False, 1)
    assert not h.usable(clock.now) and not h.breaker_allows(clock.now)


def test_probe_success_closes_and_forgets_the_past() -> None:
    clock, board = make()
    fail(board, 5)
    clock.advance(10)
    board.record_success(take(board), 0.1, 0.2)
    h = board.target(T)
    assert (h.state, h.trips, h.consecutive_failures, h.window_requests, h.in_flight) == (
        BreakerState.CLOSED,
        0,
        0,
        0,
        0,
    )
    permits = [take(board) for _ in range(10)]  # closed: no probe limit
    assert not any(p.probe for p in permits)


def test_probe_failure_reopens_with_a_growing_cooldown_until_a_close_resets_it() -> None:
    clock, board = make()
    fail(board, 5)
    for expected in [20, 40, 80, 160, 300, 300]:
        clock.advance(board.target(T).recovers_at(clock.now) - clock.now)
        board.record_failure(take(board), ErrorKind.TIMEOUT)
        h = board.target(T)
        assert h.state is BreakerState.OPEN
        assert h.open_until == pytest.approx(clock.now + expected)
    clock.advance(300)
    board.record_success(take(board))
    fail(board, 5)
    assert board.target(T).open_until == clock.now + 10


def test_a_released_probe_frees_its_slot() -> None:
    clock, board = make()
    fail(board, 5)
    clock.advance(10)
    probe = take(board)
    board.release(probe)  # cancelled (a hedge loser, say): no outcome
    assert board.target(T).state is BreakerState.HALF_OPEN
    assert take(board).probe


def test_several_half_open_probes() -> None:
    clock, board = make(half_open_probes=3)
    fail(board, 5)
    clock.advance(10)
    probes = [take(board) for _ in range(3)]
    assert all(p.probe for p in probes)
    assert board.acquire(T) is None
    board.record_success(probes[0])
    assert board.target(T).state is BreakerState.CLOSED
    # the other probes finish late: they belong to a past state and change nothing
    board.record_failure(probes[1], ErrorKind.TIMEOUT)
    board.release(probes[2])
    h = board.target(T)
    assert (h.state, h.consecutive_failures, h.in_flight, h.probes_in_flight) == (BreakerState.CLOSED, 0, 0, 0)


def test_outcomes_of_an_earlier_state_never_move_the_breaker() -> None:
    clock, board = make()
    early = [take(board) for _ in range(2)]  # admitted while closed, still in flight
    fail(board, 5)
    clock.advance(10)
    probe = take(board)
    board.record_failure(early[0], ErrorKind.TIMEOUT)  # late failure: no re-open
    assert board.target(T).state is BreakerState.HALF_OPEN
    board.record_success(early[1])  # late success: no close
    assert board.target(T).state is BreakerState.HALF_OPEN
    assert board.target(T).probes_in_flight == 1
    board.record_success(probe)
    assert board.target(T).state is BreakerState.CLOSED
    assert board.target(T).latency_samples == 2  # statistics still learn from late answers


def test_force_lets_one_probe_through_an_open_breaker() -> None:
    clock, board = make()
    fail(board, 5)
    assert board.acquire(T) is None
    forced = board.acquire(T, force=True)
    assert forced is not None and forced.probe
    assert board.target(T).state is BreakerState.HALF_OPEN
    assert board.acquire(T, force=True) is None  # force does not lift the probe limit
    board.record_failure(forced, ErrorKind.CONNECT)
    h = board.target(T)
    assert h.state is BreakerState.OPEN and h.open_until == clock.now + 20


def test_force_on_a_closed_breaker_is_an_ordinary_permit() -> None:
    _, board = make()
    p = take(board, force=True)
    assert not p.probe


@pytest.mark.parametrize("kind", sorted(TARGET_KINDS))
def test_every_health_kind_counts_against_the_target(kind: ErrorKind) -> None:
    _, board = make()
    fail(board, 5, kind)
    assert board.target(T).state is BreakerState.OPEN
    assert board.target(T).last_error is kind


@pytest.mark.parametrize("kind", [ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTER, ErrorKind.CONTEXT_LENGTH])
def test_caller_faults_never_open_a_breaker(kind: ErrorKind) -> None:
    _, board = make()
    fail(board, 4)
    for _ in range(100):
        board.record_failure(take(board, n_keys=2), kind)
    h = board.target(T)
    assert h.state is BreakerState.CLOSED
    assert h.consecutive_failures == 4 and h.window_failures == 4
    assert all(k.state is BreakerState.CLOSED for k in board.snapshot().keys["openai"])


def test_a_caller_fault_answer_to_a_probe_proves_the_target_alive() -> None:
    clock, board = make()
    fail(board, 5)
    clock.advance(10)
    board.record_failure(take(board), ErrorKind.CONTEXT_LENGTH)
    assert board.target(T).state is BreakerState.CLOSED


def test_the_sets_of_kinds_cover_the_brief() -> None:
    assert ErrorKind.AUTH in KEY_KINDS and ErrorKind.AUTH not in TARGET_KINDS
    assert ErrorKind.RATE_LIMITED in KEY_KINDS and ErrorKind.RATE_LIMITED in TARGET_KINDS
    for kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTER, ErrorKind.CONTEXT_LENGTH):
        assert kind not in KEY_KINDS | TARGET_KINDS


# -- keys -------------------------------------------------------------------------------------


def test_auth_failure_opens_the_key_not_the_target() -> None:
    clock, board = make()
    p = take(board, n_keys=3)
    assert p.key_index == 0
    board.record_failure(p, ErrorKind.AUTH)
    h = board.target(T)
    assert (h.state, h.consecutive_failures, h.last_error) == (BreakerState.CLOSED, 0, ErrorKind.AUTH)
    keys = board.snapshot().keys["openai"]
    assert keys[0].state is BreakerState.OPEN and keys[0].open_until == clock.now + 10
    assert [k.state for k in keys[1:]] == [BreakerState.CLOSED] * 2
    # the bad key is skipped by the rotation
    assert [take(board, n_keys=3).key_index for _ in range(4)] == [1, 2, 1, 2]


def test_auth_failure_counts_like_others_when_auth_trips_key_is_off() -> None:
    _, board = make(auth_trips_key=False)
    for _ in range(4):
        board.record_failure(take(board, n_keys=1), ErrorKind.AUTH)
    assert board.snapshot().keys["openai"][0].state is BreakerState.CLOSED
    board.record_failure(take(board, n_keys=1), ErrorKind.AUTH)
    assert board.snapshot().keys["openai"][0].state is BreakerState.OPEN


def test_auth_failure_without_keys_counts_against_the_target() -> None:
    _, board = make()
    fail(board, 5, ErrorKind.AUTH)
    assert board.target(T).state is BreakerState.OPEN


def test_pick_key_round_robins() -> None:
    _, board = make()
    assert [board.pick_key("p", 3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [board.pick_key("q", 1) for _ in range(3)] == [0, 0, 0]
    with pytest.raises(ValueError):
        board.pick_key("p", 0)


def test_rotation_skips_a_cooling_key_until_it_recovers() -> None:
    clock, board = make()
    assert take(board, n_keys=3).key_index == 0
    p = take(board, n_keys=3)
    assert p.key_index == 1
    board.record_failure(p, ErrorKind.RATE_LIMITED, retry_after=7)
    assert board.snapshot().keys["openai"][1].cooldown_until == clock.now + 7
    assert [board.pick_key("openai", 3) for _ in range(4)] == [2, 0, 2, 0]
    clock.advance(7)
    assert [board.pick_key("openai", 3) for _ in range(3)] == [1, 2, 0]


def test_when_no_key_is_usable_the_soonest_to_recover_is_picked() -> None:
    _, board = make()
    for index, wait in [(0, 30.0), (1, 5.0), (2, 60.0)]:
        p = take(board, n_keys=3)
        assert p.key_index == index
        board.record_failure(p, ErrorKind.RATE_LIMITED, retry_after=wait)
    assert board.pick_key("openai", 3) == 1
    p = take(board, n_keys=3)
    assert p.key_index == 1 and not p.key_probe


def test_a_keys_half_open_probe() -> None:
    clock, board = make()
    board.record_failure(take(board, n_keys=2), ErrorKind.AUTH)  # key 0 open for 10 s
    clock.advance(10)
    p = take(board, n_keys=2)
    assert (p.key_index, p.key_probe) == (1, False)
    p0 = take(board, n_keys=2)
    assert (p0.key_index, p0.key_probe) == (0, True)
    # while the probe is out, key 0 is not offered again
    assert [take(board, n_keys=2).key_index for _ in range(2)] == [1, 1]
    board.record_success(p0)
    assert board.snapshot().keys["openai"][0].state is BreakerState.CLOSED
    assert [take(board, n_keys=2).key_index for _ in range(2)] == [0, 1]


def test_key_in_flight_counts() -> None:
    _, board = make()
    permits = [take(board, n_keys=2) for _ in range(3)]
    keys = board.snapshot().keys["openai"]
    assert [k.in_flight for k in keys] == [2, 1]
    for p in permits:
        board.release(p)
    assert [k.in_flight for k in board.snapshot().keys["openai"]] == [0, 0]


# -- rate-limit cool-down -------------------------------------------------------------------------


def test_rate_limit_on_the_only_key_cools_the_target_for_retry_after() -> None:
    clock, board = make()
    board.record_failure(take(board, n_keys=1), ErrorKind.RATE_LIMITED, retry_after=7)
    h = board.target(T)
    assert h.state is BreakerState.CLOSED and h.breaker_allows(clock.now)
    assert h.cooldown_until == clock.now + 7 and h.cooling(clock.now) and not h.usable(clock.now)
    clock.advance(6.9)
    assert board.target(T).cooling(clock.now)
    clock.advance(0.1)
    assert board.target(T).cooldown_until is None and board.target(T).usable(clock.now)


def test_rate_limit_on_one_of_two_keys_leaves_the_target_usable() -> None:
    clock, board = make()
    board.record_failure(take(board, n_keys=2), ErrorKind.RATE_LIMITED, retry_after=7)
    assert board.target(T).usable(clock.now)
    board.record_failure(take(board, n_keys=2), ErrorKind.RATE_LIMITED, retry_after=3)
    h = board.target(T)
    assert h.cooldown_until == clock.now + 3  # the soonest key to come back
    assert board.target(U).cooldown_until is None  # another provider is unaffected


def test_keys_of_a_provider_are_shared_by_its_models() -> None:
    clock, board = make()
    board.record_failure(take(board, n_keys=1), ErrorKind.RATE_LIMITED, retry_after=4)
    assert board.target("openai/gpt-4o-mini").cooldown_until == clock.now + 4


def test_rate_limit_without_keys_cools_the_target_and_defaults_without_retry_after() -> None:
    clock, board = make()
    board.record_failure(take(board), ErrorKind.RATE_LIMITED)
    assert board.target(T).cooldown_until == clock.now + 5


def test_retry_after_is_clipped() -> None:
    clock, board = make()
    board.record_failure(take(board), ErrorKind.RATE_LIMITED, retry_after=86400)
    assert board.target(T).cooldown_until == clock.now + 300
    board.record_failure(take(board, U), ErrorKind.RATE_LIMITED, retry_after=-3)
    assert board.target(U).cooldown_until is None


def test_a_shorter_cooldown_never_shortens_a_longer_one() -> None:
    clock, board = make()
    board.record_failure(take(board), ErrorKind.RATE_LIMITED, retry_after=20)
    board.record_failure(take(board), ErrorKind.RATE_LIMITED, retry_after=2)
    assert board.target(T).cooldown_until == clock.now + 20


def test_overloaded_cools_the_target_only_with_retry_after() -> None:
    clock, board = make()
    board.record_failure(take(board, n_keys=2), ErrorKind.OVERLOADED)
    assert board.target(T).cooldown_until is None
    board.record_failure(take(board, n_keys=2), ErrorKind.OVERLOADED, retry_after=9)
    assert board.target(T).cooldown_until == clock.now + 9
    assert all(k.cooldown_until is None for k in board.snapshot().keys["openai"])


def test_a_cooling_target_is_still_admitted() -> None:
    _, board = make()
    board.record_failure(take(board), ErrorKind.RATE_LIMITED, retry_after=60)
    assert board.acquire(T) is not None  # the planner ranks it last; the board does not refuse it


def test_repeated_rate_limits_open_the_breaker_too() -> None:
    _, board = make()
    fail(board, 5, ErrorKind.RATE_LIMITED)
    assert board.target(T).state is BreakerState.OPEN


# -- latency ----------------------------------------------------------------------------------------


def test_ewma_of_ttfb_and_total() -> None:
    _, board = make()
    board.record_success(take(board), 1.0, 2.0)
    h = board.target(T)
    assert (h.ewma_ttfb_s, h.ewma_total_s) == (1.0, 2.0)
    board.record_success(take(board), 2.0, 4.0)
    h = board.target(T)
    assert h.ewma_ttfb_s == pytest.approx(1.3)
    assert h.ewma_total_s == pytest.approx(2.6)
    board.record_success(take(board), 0.0, 0.0)
    assert board.target(T).ewma_ttfb_s == pytest.approx(1.3 * 0.7)


def test_durations_default_to_the_clock() -> None:
    clock, board = make()
    p = take(board)
    clock.advance(0.25)
    board.record_success(p)
    h = board.target(T)
    assert h.ewma_ttfb_s == pytest.approx(0.25) and h.ewma_total_s == pytest.approx(0.25)


def test_a_stream_reports_first_byte_then_total_and_counts_once() -> None:
    clock, board = make()
    p = take(board)
    clock.advance(0.1)
    board.record_first_byte(p)
    board.record_first_byte(p)  # once only
    assert board.target(T).in_flight == 1  # still streaming
    clock.advance(0.9)
    board.record_success(p)
    h = board.target(T)
    assert h.ewma_ttfb_s == pytest.approx(0.1) and h.ewma_total_s == pytest.approx(1.0)
    assert (h.latency_samples, h.window_requests, h.in_flight) == (1, 1, 0)


def test_a_stream_broken_after_its_first_byte_counts_as_a_failure() -> None:
    _, board = make()
    p = take(board)
    board.record_first_byte(p, 0.05)
    board.record_failure(p, ErrorKind.PROTOCOL)
    h = board.target(T)
    assert (h.window_requests, h.window_failures, h.consecutive_failures) == (2, 1, 1)


def test_first_byte_on_a_probe_closes_the_breaker() -> None:
    clock, board = make()
    fail(board, 5)
    clock.advance(10)
    p = take(board)
    board.record_first_byte(p)
    assert board.target(T).state is BreakerState.CLOSED


def test_p95_needs_enough_samples_then_is_the_nearest_rank() -> None:
    _, board = make()
    for ms in range(1, 10):
        board.record_success(take(board), ms / 1000, ms / 1000)
    assert board.target(T).p95_ttfb_s is None
    for ms in range(10, 101):
        board.record_success(take(board), ms / 1000, ms / 1000)
    assert board.target(T).p95_ttfb_s == pytest.approx(0.095)


def test_p95_covers_only_the_latest_samples() -> None:
    _, board = make()
    for ms in range(1, 201):
        board.record_success(take(board), ms / 1000, ms / 1000)
    # the ring holds samples 73..200 (128 of them); nearest rank ceil(0.95 * 128) = 122 -> 194
    assert board.target(T).p95_ttfb_s == pytest.approx(0.194)
    assert board.target(T).latency_samples == 200


def test_p95_is_refreshed_every_few_samples() -> None:
    _, board = make(p95_refresh=8)
    for ms in range(1, 21):
        board.record_success(take(board), ms / 1000, ms / 1000)
    assert board.target(T).p95_ttfb_s == pytest.approx(0.019)
    for _ in range(7):
        board.record_success(take(board), 1.0, 1.0)
    assert board.target(T).p95_ttfb_s == pytest.approx(0.019)  # cached
    board.record_success(take(board), 1.0, 1.0)
    assert board.target(T).p95_ttfb_s == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=300))
def test_p95_matches_a_reference(samples: list[float]) -> None:
    _, board = make(latency_samples=50, p95_min_samples=1, p95_refresh=1)
    for i, s in enumerate(samples):
        board.record_success(take(board), s, s)
        if i % 7 == 0:
            last = sorted(samples[max(0, i - 49) : i + 1])
            assert board.target(T).p95_ttfb_s == last[math.ceil(0.95 * len(last)) - 1]
    last = sorted(samples[-50:])
    assert board.target(T).p95_ttfb_s == last[math.ceil(0.95 * len(last)) - 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=50))
def test_ewma_stays_within_the_samples(samples: list[float]) -> None:
    _, board = make()
    for s in samples:
        board.record_success(take(board), s, s)
    ewma = board.target(T).ewma_ttfb_s
    assert ewma is not None and min(samples) - 1e-9 <= ewma <= max(samples) + 1e-9


# -- in flight, permits, views ------------------------------------------------------------------------


def test_in_flight_counts_and_idempotent_release() -> None:
    _, board = make()
    a, b = take(board), take(board)
    assert board.target(T).in_flight == 2
    board.record_success(a)
    board.release(a)
    board.release(a)
    assert board.target(T).in_flight == 1
    board.release(b)
    board.record_failure(b, ErrorKind.TIMEOUT)  # after release: ignored
    h = board.target(T)
    assert (h.in_flight, h.consecutive_failures, h.last_error) == (0, 0, None)


def test_permit_records_its_key_and_start() -> None:
    clock, board = make()
    p = take(board, n_keys=2)
    assert (p.target_key, p.provider, p.key_index, p.started_at) == (T, "openai", 0, clock.now)
    assert take(board).key_index is None


def test_snapshot_is_immutable_and_reads_unknown_targets_as_healthy() -> None:
    clock, board = make()
    fail(board, 5)
    snap = board.snapshot()
    with pytest.raises(TypeError):
        snap.targets["x"] = TargetHealth("x")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.at = 0  # type: ignore[misc]
    fresh = snap.target("nobody/nothing")
    assert fresh.state is BreakerState.CLOSED and fresh.usable(clock.now)
    clock.advance(10)
    assert snap.target(T).state is BreakerState.OPEN  # a snapshot does not change
    assert snap.target(T).breaker_allows(clock.now)  # but tells when its breaker would let one through


def test_restricted_snapshot() -> None:
    clock, board = make()
    succeed(board, 1, T)
    board.record_failure(take(board, U, n_keys=1), ErrorKind.RATE_LIMITED, retry_after=4)
    snap = board.snapshot([U, U])
    assert list(snap.targets) == [U] and not snap.keys
    assert snap.target(U).cooldown_until == clock.now + 4  # the key's state, folded in
    full = board.snapshot()
    assert set(full.targets) == {T, U}
    assert [k.cooldown_until for k in full.keys["anthropic"]] == [clock.now + 4]


def test_snapshot_to_dict_is_json() -> None:
    clock, board = make()
    board.record_success(take(board, n_keys=2), 0.1234, 0.5)
    fail(board, 5, ErrorKind.TIMEOUT, key=U)
    data = json.loads(json.dumps(board.snapshot().to_dict()))
    assert data["at"] == clock.now
    by_target = {t["target"]: t for t in data["targets"]}
    assert by_target[T]["ewma_ttfb_ms"] == 123.4 and by_target[T]["state"] == "closed"
    assert by_target[U]["state"] == "open" and by_target[U]["last_error"] == "timeout"
    assert data["keys"]["openai"][0] == {
        "index": 0,
        "state": "closed",
        "open_until": None,
        "cooldown_until": None,
        "in_flight": 0,
        "consecutive_failures": 0,
        "trips": 0,
        "last_success_at": clock.now,
        "last_failure_at": None,
        "last_error": None,
    }


# -- invariants under any sequence of events -------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("acquire"), st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("success"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("failure"), st.integers(0, 20), st.sampled_from(sorted(ErrorKind))),
    st.tuples(st.just("release"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("first_byte"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("advance"), st.floats(0, 40), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=80), st.integers(1, 3))
def test_counts_never_leak(ops: list[tuple[str, object, object]], probes: int) -> None:
    clock, board = make(half_open_probes=probes, failure_threshold=2, min_volume=3)
    live: list[Permit] = []
    for op, a, b in ops:
        if op == "acquire":
            p = board.acquire(T, force=bool(a), n_keys=int(b))  # type: ignore[call-overload]
            if p is not None:
                live.append(p)
        elif op == "advance":
            clock.advance(float(a))  # type: ignore[arg-type]
        elif live:
            p = live[int(a) % len(live)]  # type: ignore[call-overload]
            if op == "success":
                board.record_success(p)
            elif op == "failure":
                board.record_failure(p, b, retry_after=1.0)  # type: ignore[arg-type]
            elif op == "first_byte":
                board.record_first_byte(p)
            else:
                board.release(p)
            live = [q for q in live if not q.released]
        h = board.target(T)
        assert h.in_flight == len(live)
        assert 0 <= h.probes_in_flight <= probes
        assert h.probes_in_flight <= sum(1 for q in live if q.probe)
        keys = board.snapshot().keys.get("openai", ())
        assert sum(k.in_flight for k in keys) == sum(1 for q in live if q.key_index is not None)
    for p in live:
        board.release(p)
    h = board.target(T)
    assert (h.in_flight, h.probes_in_flight) == (0, 0)


def test_unconfigured_targets_live_in_a_bounded_lru_and_pinned_ones_stay() -> None:
    clock = ManualClock(1000.0)
    board = HealthBoard(clock, HealthSettings(), pinned=[T], max_dynamic=3)
    fail(board, 2, key=T)
    for i in range(10):
        board.record_success(take(board, f"mock/bogus-{i}"))
    assert board.dynamic_targets == 3
    snap = board.snapshot()
    assert set(snap.targets) == {T, "mock/bogus-7", "mock/bogus-8", "mock/bogus-9"}
    assert snap.targets[T].consecutive_failures == 2  # the configured target's history is kept
    # Using a direct target keeps it; the least recently used goes.
    take(board, "mock/bogus-7")
    board.acquire("mock/bogus-10")
    assert set(board.snapshot().targets) == {T, "mock/bogus-7", "mock/bogus-9", "mock/bogus-10"}


def test_a_permit_outlives_its_evicted_cell() -> None:
    clock = ManualClock(1000.0)
    board = HealthBoard(clock, HealthSettings(), max_dynamic=1)
    early = take(board, "mock/a")
    stream = take(board, "mock/s")  # evicts mock/a while its call is in flight
    board.record_first_byte(early)
    board.record_success(early)
    board.record_failure(stream, ErrorKind.UPSTREAM_5XX)
    board.release(early)
    assert board.dynamic_targets == 1
