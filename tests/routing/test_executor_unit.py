"""Executor unit tests: real adapters and health board, an in-memory transport, virtual time.

Each test scripts what every target does (``tests/support/fake_transport.py``) and asserts what the
executor did: which targets it called in which order, what it answered, what it recorded, and how
long it waited in virtual time. Nothing here touches the network or waits for real.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from fluxway.adapters.base import Adapter
from fluxway.adapters.registry import create_adapter
from fluxway.canonical import CanonicalRequest, Endpoint, ErrorKind, UpstreamError
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.routing.breaker import BreakerState
from fluxway.routing.executor import Completed, Executor
from fluxway.routing.stream import RoutedStream
from tests.support.fake_transport import (
    Answer,
    Break,
    ConnectError,
    FakeTransport,
    Hang,
    Status,
    VirtualTime,
)

MESSAGES = [{"role": "user", "content": "hi"}]


class Rig:
    """One executor wired to a fake transport on virtual time."""

    def __init__(self, models: list[dict[str, Any]], *, providers: dict[str, dict[str, Any]] | None = None,
                 breaker: dict[str, Any] | None = None) -> None:
        names = sorted({t["provider"] for m in models for t in m["targets"]})
        extra = providers or {}
        cfg = parse(
            {
                "providers": [
                    {"name": p, "type": "openai-compatible", "base_url": f"http://{p}.test/v1", **extra.get(p, {})}
                    for p in names
                ],
                "models": models,
                "routing": {"breaker": breaker or {}},
            }
        )
        self.vt = VirtualTime()
        self.fake = FakeTransport(self.vt)
        adapters: dict[str, Adapter] = {p.name: create_adapter(p) for p in cfg.providers}
        self.ex = Executor(cfg, adapters, self.fake, clock=self.vt.clock, sleep=self.vt.sleep, rng=random.Random(7))

    async def complete(self, model: str = "m", **body: Any) -> Completed:
        req = CanonicalRequest(Endpoint.CHAT, model, {"model": model, "messages": MESSAGES, **body})
        return await self.ex.complete(req, self.ex.resolve(model))

    async def fails(self, model: str = "m") -> GatewayError:
        with pytest.raises(GatewayError) as info:
            await self.complete(model)
        return info.value

    async def stream(self, model: str = "m", **body: Any) -> RoutedStream:
        req = CanonicalRequest(Endpoint.CHAT, model, {"model": model, "messages": MESSAGES, "stream": True, **body},
                               stream=True)
        return await self.ex.open_stream(req, self.ex.resolve(model))


def model(name: str = "m", *targets: str, **extra: Any) -> dict[str, Any]:
    """A model whose targets are "provider/model" strings, tried in config order unless told."""
    return {
        "name": name,
        "strategy": "fallback",
        "targets": [{"provider": t.split("/")[0], "model": t.split("/")[1]} for t in targets],
        **extra,
    }


def text_of(done: Completed) -> str:
    content = done.response.body["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    return content


async def read_all(rs: RoutedStream) -> str:
    parts = []
    for c in [*rs.first, *[c async for c in rs.rest()]]:
        for choice in c.data.get("choices") or ():
            parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


# -- retries ----------------------------------------------------------------------------------


async def test_an_answer_on_the_first_try_is_returned_with_its_attempt_record() -> None:
    rig = Rig([model("m", "a/x", "b/y")])
    rig.fake.script("a/x", Answer("first try"))
    done = await rig.complete()
    assert text_of(done) == "first try"
    assert done.target.key == "a/x"
    assert rig.fake.called() == ["a/x"]
    assert (done.trace.attempts, done.trace.tried, done.trace.errors) == (1, ["a/x"], [])
    assert rig.vt.slept == []


async def test_a_retryable_status_is_retried_on_the_same_target_after_a_jittered_backoff() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 3, "backoff_ms": 100, "max_backoff_ms": 1000})])
    rig.fake.script("a/x", Status(500), Status(503), Answer("third time lucky"))
    t0 = rig.vt.now()
    done = await rig.complete()
    assert text_of(done) == "third time lucky"
    assert rig.fake.called() == ["a/x", "a/x", "a/x"]
    assert [e.kind for e in done.trace.errors] == [ErrorKind.UPSTREAM_5XX, ErrorKind.UPSTREAM_5XX]
    # Equal jitter: retry n waits in [cap/2, cap], cap = backoff_ms * 2**(n-1).
    first, second = rig.vt.slept
    assert 0.05 <= first <= 0.1 and 0.1 <= second <= 0.2
    # The retries went out only after the backoff had passed on the executor's clock.
    starts = [c.started_at - t0 for c in rig.fake.calls]
    assert starts == pytest.approx([0.0, first, first + second])


async def test_the_backoff_is_capped_by_max_backoff() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 4, "backoff_ms": 100, "max_backoff_ms": 150})])
    rig.fake.script("a/x", Status(500))
    err = await rig.fails()
    assert err.status == 502 and err.code == "upstream_error"
    assert err.headers["x-fluxway-attempts"] == "4"
    assert len(rig.vt.slept) == 3
    assert all(s <= 0.15 for s in rig.vt.slept) and rig.vt.slept[2] >= 0.075


async def test_a_bad_request_is_neither_retried_nor_sent_to_another_target_or_fallback() -> None:
    rig = Rig([model("m", "a/x", "b/y", fallbacks=["f"]), model("f", "c/z")])
    rig.fake.script("a/x", Status(400, "messages: bad role"))
    err = await rig.fails()
    assert rig.fake.called() == ["a/x"]
    assert (err.status, err.code) == (400, "upstream_bad_request")
    assert "messages: bad role" in err.message
    assert rig.vt.slept == []


async def test_a_rate_limited_single_key_target_is_left_at_once_and_cooled_for_the_next_call() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 3})], providers={"a": {"api_keys": ["k1"]}})
    rig.fake.script("a/x", Status(429, retry_after=30), Answer("a again"))
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "b/y"]  # no retry against the same rate-limited key
    assert rig.vt.slept == []  # nor a wait for its retry-after
    # The next call plans the cooling target last...
    await rig.complete()
    assert rig.fake.called()[2:] == ["b/y"]
    # ... until its retry-after has passed.
    rig.vt.clock.advance(30)
    done = await rig.complete()
    assert done.target.key == "a/x" and text_of(done) == "a again"


async def test_a_rate_limited_key_is_retried_at_once_with_the_providers_next_key() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 2})], providers={"a": {"api_keys": ["key-one", "key-two"]}})
    rig.fake.script("a/x", Status(429, retry_after=20), Answer("other key"))
    done = await rig.complete()
    assert text_of(done) == "other key"
    assert [c.headers["authorization"] for c in rig.fake.calls] == ["Bearer key-one", "Bearer key-two"]
    assert rig.vt.slept == []


async def test_every_target_rate_limited_gives_a_429_with_the_upstream_retry_after() -> None:
    rig = Rig([model("m", "a/x", "b/y")])
    rig.fake.script("a/x", Status(429, retry_after=3))
    rig.fake.script("b/y", Status(429, retry_after=7.2))
    err = await rig.fails()
    assert rig.fake.called() == ["a/x", "b/y"]
    assert (err.status, err.code, err.headers["retry-after"]) == (429, "upstream_rate_limited", "8")


# -- fallbacks --------------------------------------------------------------------------------


async def test_a_connect_error_falls_back_to_the_next_target_after_the_retry_budget() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 2})])
    rig.fake.script("a/x", ConnectError())
    rig.fake.script("b/y", Answer("from b"))
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "a/x", "b/y"]
    assert text_of(done) == "from b" and done.target.key == "b/y"
    assert [e.target for e in done.trace.errors] == ["a/x", "a/x"]
    assert [e.kind for e in done.trace.errors] == [ErrorKind.CONNECT, ErrorKind.CONNECT]


async def test_fallback_models_are_tried_after_every_target_of_the_model() -> None:
    rig = Rig([
        model("m", "a/x", "b/y", retry={"attempts": 1}, fallbacks=["f"]),
        model("f", "c/z", retry={"attempts": 1}),
    ])
    rig.fake.script("a/x", Status(500))
    rig.fake.script("b/y", Status(502))
    rig.fake.script("c/z", Answer("fallback model"))
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "b/y", "c/z"]
    assert text_of(done) == "fallback model" and done.trace.attempts == 3


async def test_a_context_length_error_moves_to_the_context_fallback_not_the_fallbacks() -> None:
    rig = Rig([
        model("m", "a/x", "b/y", fallbacks=["f"], context_fallback="big"),
        model("f", "c/z"),
        model("big", "d/long"),
    ])
    rig.fake.script("a/x", Status(400, "This model's maximum context length is 8192 tokens",
                                  error_code="context_length_exceeded"))
    rig.fake.script("d/long", Answer("long context"))
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "d/long"]
    assert text_of(done) == "long context"


# -- timeouts ---------------------------------------------------------------------------------


async def test_a_hanging_target_times_out_on_the_models_timeout_and_is_not_retried_when_others_remain() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 3},
                     timeout={"connect": 1, "first_token": 2, "total": 5})])
    rig.fake.script("a/x", Hang())
    rig.fake.script("b/y", Answer("b was quick"))
    t0 = rig.vt.now()
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "b/y"]
    assert text_of(done) == "b was quick"
    assert [e.kind for e in done.trace.errors] == [ErrorKind.TIMEOUT]
    first = rig.fake.calls[0]
    assert (first.timeouts.connect, first.timeouts.first_token, first.timeouts.total) == (1, 2, 5)
    assert rig.fake.calls[1].started_at - t0 == pytest.approx(2.0)  # one read timeout, no backoff


async def test_the_providers_timeout_applies_when_the_model_sets_none() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 2})],
              providers={"a": {"timeout": {"connect": 0.5, "first_token": 4, "total": 9}}})
    rig.fake.script("a/x", Hang())
    err = await rig.fails()
    assert (err.status, err.code) == (504, "timeout")
    assert {(c.timeouts.first_token, c.timeouts.total) for c in rig.fake.calls} == {(4, 9)}
    assert rig.fake.called() == ["a/x", "a/x"]  # the only target: its retry is worth it


# -- hedging ----------------------------------------------------------------------------------


async def test_a_slow_first_target_is_hedged_after_the_delay_and_the_loser_cancelled() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 100})])
    rig.fake.script("a/x", Answer("slow", latency=5))
    rig.fake.script("b/y", Answer("hedge", latency=0.2))
    t0 = rig.vt.now()
    done = await rig.complete()
    assert text_of(done) == "hedge" and done.target.key == "b/y"
    a, b = rig.fake.calls
    assert (a.target, b.target) == ("a/x", "b/y")
    assert b.started_at - t0 == pytest.approx(0.1)
    assert a.outcome == "cancelled" and b.outcome == "answered"
    assert (rig.ex.counters.hedges, rig.ex.counters.hedge_wins) == (1, 1)
    assert rig.ex.board.target("a/x").in_flight == 0  # the loser's permit was handed back


async def test_a_first_target_answering_within_the_hedge_delay_is_not_hedged() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 100})])
    rig.fake.script("a/x", Answer("quick", latency=0.05))
    done = await rig.complete()
    assert text_of(done) == "quick"
    assert rig.fake.called() == ["a/x"]
    assert rig.ex.counters.hedges == 0


async def test_the_first_winner_of_a_hedge_is_returned_even_if_it_started_first() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 100})])
    rig.fake.script("a/x", Answer("a finishes first", latency=0.5))
    rig.fake.script("b/y", Answer("b too late", latency=2))
    done = await rig.complete()
    assert text_of(done) == "a finishes first"
    assert [c.outcome for c in rig.fake.calls] == ["answered", "cancelled"]
    assert (rig.ex.counters.hedges, rig.ex.counters.hedge_wins) == (1, 0)


async def test_a_failed_hedge_race_goes_on_with_the_remaining_targets() -> None:
    rig = Rig([model("m", "a/x", "b/y", "c/z", retry={"attempts": 1}, hedge={"after_ms": 100})])
    rig.fake.script("a/x", Status(500, latency=0.3))
    rig.fake.script("b/y", Status(500, latency=0.3))
    rig.fake.script("c/z", Answer("third"))
    done = await rig.complete()
    assert rig.fake.called() == ["a/x", "b/y", "c/z"]
    assert text_of(done) == "third"


async def test_a_hedged_stream_returns_the_first_leg_to_produce_a_chunk() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 250})])
    rig.fake.script("a/x", Hang())
    rig.fake.script("b/y", Answer("streamed by b"))
    rs = await rig.stream()
    assert rs.target.key == "b/y"
    assert await read_all(rs) == "streamed by b"
    assert rig.fake.streams[0].closed  # the loser had its headers: its connection was dropped
    assert rig.fake.calls[0].outcome == "closed"
    assert rig.fake.calls[1].started_at - rig.fake.calls[0].started_at == pytest.approx(0.25)



async def test_without_after_ms_the_hedge_waits_for_the_targets_observed_p95_ttfb() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={})])
    rig.fake.script("a/x", *[Answer("steady", latency=0.3)] * 10, Answer("stuck", latency=60))
    for _ in range(10):  # too few samples for a p95 yet: no hedging
        await rig.complete()
    assert rig.fake.called() == ["a/x"] * 10 and rig.ex.counters.hedges == 0
    assert rig.ex.board.target("a/x").p95_ttfb_s == pytest.approx(0.3)
    done = await rig.complete()
    assert done.target.key == "b/y"
    assert rig.fake.calls[11].started_at - rig.fake.calls[10].started_at == pytest.approx(0.3)

# -- breakers ---------------------------------------------------------------------------------

BREAKER = {"failure_threshold": 2, "open_cooldown_s": 10, "max_open_cooldown_s": 100}


async def test_a_breaker_opens_after_consecutive_failures_and_the_target_is_skipped_until_cooldown() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 1})], breaker=BREAKER)
    rig.fake.script("a/x", Status(500), Status(500), Answer("a recovered"))
    await rig.complete()
    await rig.complete()
    assert rig.fake.called() == ["a/x", "b/y", "a/x", "b/y"]
    assert rig.ex.board.target("a/x").state is BreakerState.OPEN
    await rig.complete()  # open: straight to b
    rig.vt.clock.advance(9.9)
    await rig.complete()  # still open
    assert rig.fake.called()[4:] == ["b/y", "b/y"]
    rig.vt.clock.advance(0.1)  # the cool-down has passed: half-open, one probe goes to a
    done = await rig.complete()
    assert done.target.key == "a/x" and text_of(done) == "a recovered"
    assert rig.ex.board.target("a/x").state is BreakerState.CLOSED


async def test_a_failed_half_open_probe_reopens_the_breaker_for_a_longer_cooldown() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 1})], breaker=BREAKER)
    rig.fake.script("a/x", Status(500))
    await rig.complete()
    await rig.complete()
    rig.vt.clock.advance(10)
    await rig.complete()  # the probe fails: open again, for 2 x 10 s
    assert rig.fake.called() == ["a/x", "b/y", "a/x", "b/y", "a/x", "b/y"]
    rig.vt.clock.advance(10)
    await rig.complete()
    assert rig.fake.called()[6:] == ["b/y"]
    rig.vt.clock.advance(10)
    await rig.complete()
    assert rig.fake.called()[7:] == ["a/x", "b/y"]


async def test_while_the_half_open_probe_is_in_flight_other_calls_skip_the_target() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 1})], breaker=BREAKER)
    rig.fake.script("a/x", Status(500), Status(500), Answer("probe answered", latency=3))
    rig.fake.script("b/y", Answer("b", latency=1))
    await rig.complete()
    await rig.complete()
    rig.vt.clock.advance(10)
    probe = asyncio.ensure_future(rig.complete())
    await asyncio.sleep(0)  # the probe is sent and in flight
    other = await rig.complete()
    assert other.target.key == "b/y"
    assert (await probe).target.key == "a/x"
    assert rig.fake.called()[4:] == ["a/x", "b/y"]


async def test_with_every_breaker_open_the_call_is_forced_through_rather_than_refused() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 1})], breaker={**BREAKER, "failure_threshold": 1})
    rig.fake.script("a/x", Status(500), Answer("forced probe"))
    await rig.fails()
    assert rig.ex.board.target("a/x").state is BreakerState.OPEN
    done = await rig.complete()  # panic mode: no breaker makes the call worse off than none
    assert text_of(done) == "forced probe"
    assert rig.fake.called() == ["a/x", "a/x"]



async def test_an_active_health_check_that_gets_a_bad_request_closes_an_open_breaker() -> None:
    rig = Rig([model("m", "a/x", retry={"attempts": 1})], breaker={**BREAKER, "failure_threshold": 1})
    rig.fake.script("a/x", Status(500), Status(400, "max_tokens too small"))
    await rig.fails()
    assert rig.ex.board.target("a/x").state is BreakerState.OPEN
    assert await rig.ex.probe(rig.ex.resolve("m").targets[0], timeout_s=3) is None  # it answered: alive
    assert rig.ex.board.target("a/x").state is BreakerState.CLOSED
    assert rig.fake.calls[1].body["max_tokens"] == 1 and rig.fake.calls[1].timeouts.total == 3

# -- streams and mid-stream failover ----------------------------------------------------------


async def test_a_stream_fails_over_before_its_first_chunk_without_the_client_seeing_it() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 1})])
    rig.fake.script("a/x", Status(503))
    rig.fake.script("b/y", Answer("clean answer"))
    rs = await rig.stream()
    assert await read_all(rs) == "clean answer"
    assert rs.target.key == "b/y" and rs.failovers == []
    assert [e.kind for e in rs.trace.errors] == [ErrorKind.UPSTREAM_5XX]
    assert rig.fake.streams[1].released  # read to its end: the connection is reusable


async def test_a_stream_broken_midway_is_continued_on_a_backup_that_can_continue_it() -> None:
    rig = Rig([model("m", "a/x", "b/y", stream_failover=True)], providers={"b": {"continuation": "prefix"}})
    rig.fake.script("a/x", Break(("Once upon ", "a time ")))
    rig.fake.script("b/y", Answer("there was a gateway."))
    rs = await rig.stream(max_tokens=100)
    assert await read_all(rs) == "Once upon a time there was a gateway."
    assert rig.fake.called() == ["a/x", "b/y"]
    assert rig.fake.calls[0].outcome == "broken"
    # The backup was asked to continue the partial answer, within what is left of the budget.
    sent = rig.fake.calls[1].body
    assert sent["messages"][-1] == {"role": "assistant", "content": "Once upon a time ", "prefix": True}
    assert 0 < sent["max_tokens"] < 100
    [hop] = rs.failovers
    assert (hop["from"], hop["to"], hop["continuation"], hop["error"]) == ("a/x", "b/y", "prefix", "upstream_5xx")
    assert rs.target.key == "b/y" and rig.ex.counters.stream_failovers == 1
    assert rig.ex.board.target("a/x").consecutive_failures == 1


async def test_a_stream_broken_midway_without_failover_raises_to_the_reader() -> None:
    rig = Rig([model("m", "a/x", "b/y")], providers={"b": {"continuation": "prefix"}})
    rig.fake.script("a/x", Break(("half ",)))
    rs = await rig.stream()
    with pytest.raises(UpstreamError) as info:
        _ = [c async for c in rs.rest()]
    assert info.value.kind is ErrorKind.UPSTREAM_5XX
    assert rig.fake.called() == ["a/x"]


async def test_a_partial_answer_no_other_target_can_continue_is_not_spliced() -> None:
    rig = Rig([model("m", "a/x", "b/y", stream_failover=True)])  # openai-compatible: continuation none
    rig.fake.script("a/x", Break(("half an ",)))
    rs = await rig.stream()
    with pytest.raises(UpstreamError) as info:
        _ = [c async for c in rs.rest()]
    assert "not continued" in info.value.message and "continuation none" in info.value.message
    assert rig.fake.called() == ["a/x"]



async def test_latencies_are_measured_on_the_executors_clock() -> None:
    rig = Rig([model("m", "a/x", "b/y", retry={"attempts": 1})])
    rig.fake.script("a/x", Answer("slowish", latency=0.75), Status(500))
    rig.fake.script("b/y", Answer("streamed", latency=0.25))
    done = await rig.complete()
    assert done.trace.upstream_s == pytest.approx(0.75)
    assert rig.ex.board.target("a/x").ewma_ttfb_s == pytest.approx(0.75)
    rs = await rig.stream()
    assert await read_all(rs) == "streamed"
    assert rig.ex.board.target("b/y").ewma_ttfb_s == pytest.approx(0.25)  # time to its first chunk
