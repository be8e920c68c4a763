"""An in-memory :class:`fluxway.routing.transport.Transport` on virtual time, for executor unit tests.

:class:`VirtualTime` is a :class:`~fluxway.routing.clock.ManualClock` with an asyncio sleeper on it: a
sleep waits for virtual time, and virtual time jumps to the next deadline once every task is blocked.
The executor gets ``clock=vt.clock, sleep=vt.sleep``; its backoff and hedge delays are recorded in
``vt.slept`` and cost no real time.

:class:`FakeTransport` answers the calls the real adapters build. A call goes to the target named by
its URL's host (``http://<provider>.test/v1``) and its body's ``model``; each target follows a script
of behaviours, one per call, the last repeating (unscripted targets answer ``Answer()``):

=====================  ====================================================================
``Answer(text)``       a chat completion (streams: ``text`` split on spaces, a chunk each)
``Status(code)``       an OpenAI-shaped error with that HTTP status (and ``retry_after``)
``ConnectError()``     the connection is refused (a CONNECT UpstreamError)
``Hang()``             no answer: a TIMEOUT UpstreamError once the call's read timeout passes
``Break(pieces)``      streams: a chunk per piece, then the connection breaks (whole answers:
                       it breaks before the body)
=====================  ====================================================================

Every behaviour takes a ``latency`` (virtual seconds before the headers). Every call is recorded in
``calls`` (target, parsed body, timeouts, virtual start time, and how it ended).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from fluxway.canonical import JSON, ErrorKind, HttpCall, UpstreamError
from fluxway.routing.clock import ManualClock
from fluxway.routing.transport import DEFAULT_MAX_RESPONSE_BYTES, Reply, Timeouts

# Loop turns to let every runnable task run before virtual time jumps (everything here is in
# memory: a handful of turns settles it; the margin is cheap).
_SETTLE_TURNS = 50


class VirtualTime:
    """A manual clock whose sleeps end when virtual time reaches them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.clock = ManualClock(start)
        self.slept: list[float] = []  # what the code under test asked ``sleep`` for
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self.clock()

    async def sleep(self, seconds: float) -> None:
        """The executor's sleeper (recorded in ``slept``)."""
        self.slept.append(seconds)
        await self.wait(seconds)

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (unrecorded: the fake upstreams' latencies)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.clock() + seconds, next(self._seq), fut))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._drive())
        await fut

    async def _drive(self) -> None:
        while self._timers:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            while self._timers and self._timers[0][2].done():  # cancelled sleeps
                heapq.heappop(self._timers)
            if not self._timers:
                return
            deadline, _, fut = heapq.heappop(self._timers)
            if deadline > self.clock.now:
                self.clock.now = deadline
            fut.set_result(None)


# -- behaviours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    text: str = "hello from upstream"
    latency: float = 0.0
    chunk_latency: float = 0.0  # streams: before each chunk after the first


@dataclass(frozen=True)
class Status:
    code: int
    message: str = "upstream failed"
    error_code: str = ""
    retry_after: float | None = None
    latency: float = 0.0


@dataclass(frozen=True)
class ConnectError:
    latency: float = 0.0


@dataclass(frozen=True)
class Hang:
    latency: float = 0.0  # (the timeout starts after it: headers then silence, for a stream)


@dataclass(frozen=True)
class Break:
    pieces: tuple[str, ...] = ("partial ", "answer ")
    latency: float = 0.0


Behaviour = Answer | Status | ConnectError | Hang | Break


@dataclass
class Call:
    """One call the fake received."""

    target: str
    stream: bool
    body: JSON
    headers: dict[str, str]
    timeouts: Timeouts
    started_at: float
    outcome: str = "pending"  # answered | failed | cancelled | broken | closed
    ended_at: float | None = None


# -- wire bytes ---------------------------------------------------------------------------------


def _completion(model: str, text: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )


def _event(model: str, delta: JSON, finish: str | None = None, usage: JSON | None = None) -> bytes:
    data: JSON = {
        "id": f"chatcmpl-{model}",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        data["usage"] = usage
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _error_body(b: Status) -> bytes:
    return orjson.dumps({"error": {"message": b.message, "type": "error", "code": b.error_code or None}})


def _headers(b: Status) -> dict[str, str]:
    h = {"content-type": "application/json"}
    if b.retry_after is not None:
        h["retry-after"] = str(b.retry_after)
    return h


# -- the transport ------------------------------------------------------------------------------


class FakeStream:
    """An open fake stream (the :class:`~fluxway.routing.transport.OpenStream` protocol)."""

    def __init__(self, vt: VirtualTime, call: Call, status: int, headers: Mapping[str, str],
                 body: bytes = b"", events: list[bytes] | None = None, *, breaks: bool = False,
                 hangs: float | None = None, chunk_latency: float = 0.0) -> None:
        self._vt = vt
        self._call = call
        self.status = status
        self.headers: Mapping[str, str] = headers
        self._body = body
        self._events = events or []
        self._breaks = breaks
        self._hangs = hangs
        self._chunk_latency = chunk_latency
        self.closed = False
        self.released = False

    async def read(self, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes:
        return self._body[:max_bytes]

    async def chunks(self) -> AsyncIterator[bytes]:
        for i, data in enumerate(self._events):
            if i and self._chunk_latency:
                await self._vt.wait(self._chunk_latency)
            if self.closed:
                return
            yield data
        if self._hangs is not None:
            await self._vt.wait(self._hangs)
            self._end("failed")
            raise UpstreamError(ErrorKind.TIMEOUT, "upstream timed out")
        if self._breaks:
            self._end("broken")
            raise UpstreamError(ErrorKind.UPSTREAM_5XX, "upstream connection broke: ServerDisconnectedError")

    def _end(self, outcome: str) -> None:
        if self._call.outcome == "pending":
            self._call.outcome = outcome
            self._call.ended_at = self._vt.now()

    def close(self) -> None:
        self.closed = True
        self._end("closed")

    def release(self) -> None:
        self.released = True
        self._end("answered")


@dataclass
class FakeTransport:
    vt: VirtualTime
    scripts: dict[str, list[Behaviour]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)

    def script(self, target: str, *behaviours: Behaviour) -> None:
        """``target`` ("provider/model") follows ``behaviours`` call by call, the last repeating."""
        self.scripts[target] = list(behaviours)

    def called(self) -> list[str]:
        """The targets called, in order."""
        return [c.target for c in self.calls]

    def _next(self, target: str) -> Behaviour:
        script = self.scripts.get(target)
        if not script:
            return Answer()
        return script.pop(0) if len(script) > 1 else script[0]

    def _start(self, call: HttpCall, timeouts: Timeouts, stream: bool) -> tuple[Call, Behaviour]:
        host = urlsplit(call.url).hostname or ""
        body = orjson.loads(call.body or b"{}")
        target = f"{host.removesuffix('.test')}/{body.get('model')}"
        rec = Call(target, stream, body, dict(call.headers), timeouts, self.vt.now())
        self.calls.append(rec)
        return rec, self._next(target)

    async def _before_headers(self, rec: Call, b: Behaviour) -> None:
        try:
            if b.latency:
                await self.vt.wait(b.latency)
            if isinstance(b, ConnectError):
                raise UpstreamError(ErrorKind.CONNECT, "cannot connect to upstream: connection refused")
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            rec.ended_at = self.vt.now()
            raise
        except UpstreamError:
            rec.outcome = "failed"
            rec.ended_at = self.vt.now()
            raise

    async def send(self, call: HttpCall, timeouts: Timeouts, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> Reply:
        rec, b = self._start(call, timeouts, stream=False)
        await self._before_headers(rec, b)
        try:
            if isinstance(b, Hang):
                await self.vt.wait(min(timeouts.first_token, timeouts.total))
                rec.outcome = "failed"
                rec.ended_at = self.vt.now()
                raise UpstreamError(ErrorKind.TIMEOUT, "upstream timed out")
            if isinstance(b, Break):
                rec.outcome = "broken"
                rec.ended_at = self.vt.now()
                raise UpstreamError(ErrorKind.UPSTREAM_5XX, "upstream connection broke: ServerDisconnectedError")
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            rec.ended_at = self.vt.now()
            raise
        rec.ended_at = self.vt.now()
        if isinstance(b, Status):
            rec.outcome = "failed"
            return Reply(b.code, _headers(b), _error_body(b), rec.ended_at - rec.started_at)
        assert isinstance(b, Answer)
        rec.outcome = "answered"
        body = _completion(str(rec.body.get("model")), b.text)
        return Reply(200, {"content-type": "application/json"}, body, rec.ended_at - rec.started_at)

    async def open_stream(self, call: HttpCall, timeouts: Timeouts) -> FakeStream:
        rec, b = self._start(call, timeouts, stream=True)
        await self._before_headers(rec, b)
        model = str(rec.body.get("model"))
        sse = {"content-type": "text/event-stream"}
        if isinstance(b, Status):
            rec.outcome = "failed"
            rec.ended_at = self.vt.now()
            stream = FakeStream(self.vt, rec, b.code, _headers(b), _error_body(b))
        elif isinstance(b, Hang):
            stream = FakeStream(self.vt, rec, 200, sse, hangs=min(timeouts.first_token, timeouts.total))
        elif isinstance(b, Break):
            events = [_event(model, {"role": "assistant", "content": ""})]
            events += [_event(model, {"content": p}) for p in b.pieces]
            stream = FakeStream(self.vt, rec, 200, sse, events=events, breaks=True)
        else:
            assert isinstance(b, Answer)
            events = [_event(model, {"role": "assistant", "content": ""})]
            events += [_event(model, {"content": p}) for p in _pieces(b.text)]
            events.append(_event(model, {}, "stop"))
            events.append(_event(model, {}, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
            events.append(b"data: [DONE]\n\n")
            stream = FakeStream(self.vt, rec, 200, sse, events=events, chunk_latency=b.chunk_latency)
        self.streams.append(stream)
        return stream
