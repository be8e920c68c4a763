"""A fault-injecting OpenAI-compatible upstream for the resilience tests.

``FaultyUpstream`` serves ``POST /v1/chat/completions`` (and ``/chat/completions``) with a JSON
``chat.completion`` or, when the body asks for ``stream``, an SSE stream. Each request is answered
in one of these modes:

=================  ==========================================================================
``ok``             an answer (``delay`` before it, ``first_byte_delay`` before the headers,
                   ``chunk_delay`` between stream chunks)
``500`` ``503``    an OpenAI-shaped error with that status
``429``            rate limited, with ``retry-after: <retry_after>``
``400``            an invalid_request_error (the caller's fault: never worth retrying)
``context_length`` 400 ``context_length_exceeded``
``refused``        nothing listens on the port (the listener is closed and open connections dropped)
``reset_body``     headers and half of the body (streams: half an event, before any chunk), then the
                   connection is cut
``reset_stream``   streams: the role chunk and ``partial`` text, then the connection is cut (JSON:
                   like ``reset_body``)
``stall``          streams: the role chunk and ``partial`` text, then nothing more (JSON: like ``hang``)
``slow``           ``ok`` after a slow first byte (``slow_s``)
``hang``           never answers (until the client goes away)
``garbage``        streams: a malformed event first; JSON: a 200 that is not JSON
``drip``           headers at once, then a byte every ``drip_s`` forever (only a total timeout ends it)
=================  ==========================================================================

The mode applies to every request, to every ``every``-th one (``every=3``: requests 3, 6, 9, ...),
or to a seeded-random fraction ``rate`` of them, and only to those signed with ``only_key`` if set;
``set_mode`` switches it at runtime, so a test can make a provider fail and recover. The others
are answered ``ok``.

Every request is recorded (``requests``, as :class:`~tests.support.upstream.Recorded`) except those
refused; ``outcomes`` counts the modes actually applied, ``disconnects`` the requests whose client
went away before the answer was complete (``disconnected`` is set on the first).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from tests.support.blackhole import Blackhole
from tests.support.load import Load, run_load, run_raw_load
from tests.support.openai_bodies import chunk, completion, error, usage, usage_chunk
from tests.support.pair import MODEL_A, MODEL_B, pair_config
from tests.support.upstream import FakeUpstream, Recorded

# The scenario helpers once defined here, for existing imports.
__all__ = [
    "FAILURE_MODES", "MODEL_A", "MODEL_B", "MODES", "Blackhole", "FaultyUpstream", "Load", "pair_config", "run_load",
    "run_raw_load",
]

MODES = (
    "ok",
    "500",
    "503",
    "429",
    "400",
    "context_length",
    "refused",
    "reset_body",
    "reset_stream",
    "stall",
    "slow",
    "hang",
    "garbage",
    "drip",
)

# The failure modes a second, healthy provider must hide from the client.
FAILURE_MODES = (
    "500",
    "503",
    "429",
    "refused",
    "reset_body",
    "reset_stream",
    "stall",
    "slow",
    "hang",
    "garbage",
    "drip",
)


def _error(status: int, message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return error(message, type_, param=None, code=code)


class FaultyUpstream:
    """``async with FaultyUpstream("a", mode="500") as up:`` -> ``up.url``, ``up.requests``, ``up.outcomes``."""

    def __init__(
        self,
        name: str = "up",
        mode: str = "ok",
        *,
        rate: float | None = None,
        every: int | None = None,
        seed: int = 1,
        text: str | None = None,
        partial: str = "Hello ",
        delay: float = 0.0,
        first_byte_delay: float = 0.0,
        chunk_delay: float = 0.0,
        slow_s: float = 1.0,
        drip_s: float = 0.05,
        retry_after: float = 1.0,
        hang_s: float = 60.0,
        only_key: str | None = None,
    ) -> None:
        self.name = name
        self.only_key = only_key  # if set, faults hit only requests signed with this API key
        self.text = text if text is not None else f"Hello from {name}"
        self.partial = partial
        self.delay = delay
        self.first_byte_delay = first_byte_delay
        self.chunk_delay = chunk_delay
        self.slow_s = slow_s
        self.drip_s = drip_s
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.up = FakeUpstream(self._dispatch, cancel_on_disconnect=True)
        self.outcomes: Counter[str] = Counter()
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.seen = 0  # requests that reached a handler (refused ones never do)
        self._rng = random.Random(seed)
        self._mode = "ok"
        self._rate: float | None = None
        self._every: int | None = None
        self._initial = (mode, rate, every)

    # -- control ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.up.url

    @url.setter
    def url(self, url: str) -> None:  # a test points a never-entered upstream elsewhere
        self.up.url = url

    @property
    def port(self) -> int:
        return self.up.port

    @property
    def requests(self) -> list[Recorded]:
        return self.up.requests

    @property
    def mode(self) -> str:
        return self._mode

    async def set_mode(self, mode: str, *, rate: float | None = None, every: int | None = None) -> None:
        """Switch the fault (for every request, every ``every``-th one, or a ``rate`` fraction)."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {', '.join(MODES)}")
        if rate is not None and every is not None:
            raise ValueError("give rate or every, not both")
        if mode == "refused" and (rate is not None or every is not None):
            raise ValueError("'refused' closes the listener: it applies to every request")
        was_refused = self._mode == "refused"
        self._mode, self._rate, self._every = mode, rate, every
        if mode == "refused" and not was_refused:
            await self.up.refuse()
        elif mode != "refused" and was_refused:
            await self.up.listen()

    def reset_counts(self) -> None:
        self.requests.clear()
        self.outcomes.clear()
        self.disconnects = 0
        self.disconnected.clear()

    @property
    def count(self) -> int:
        """Requests recorded (refused connections never reach the server)."""
        return len(self.requests)

    def _decide(self) -> str:
        self.seen += 1
        mode = self._mode
        if mode == "ok":
            return mode
        if self._every is not None:
            return mode if self.seen % self._every == 0 else "ok"
        if self._rate is not None:
            return mode if self._rng.random() < self._rate else "ok"
        return mode

    # -- server ----------------------------------------------------------------------------------

    async def __aenter__(self) -> FaultyUpstream:
        await self.up.__aenter__()
        mode, rate, every = self._initial
        await self.set_mode(mode, rate=rate, every=every)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.up.__aexit__(*exc)

    # -- answers ---------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/chat/completions"):
            return web.json_response(_error(404, f"no route {request.path}", "invalid_request_error"), status=404)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.json_response(_error(400, "bad json", "invalid_request_error"), status=400)
        if self.only_key is not None and request.headers.get("authorization") != f"Bearer {self.only_key}":
            mode = "ok"
        else:
            mode = self._decide()
        self.outcomes[mode] += 1
        try:
            return await self._answer(request, payload, mode)
        except asyncio.CancelledError:
            self._gone()
            raise
        except (ConnectionResetError, RuntimeError) as exc:  # writing to a closed connection
            if isinstance(exc, RuntimeError) and "closing" not in str(exc).lower():
                raise
            self._gone()
            raise

    def _gone(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _answer(self, request: web.Request, payload: dict[str, Any], mode: str) -> web.StreamResponse:
        stream = bool(payload.get("stream"))
        model = str(payload.get("model", "model"))
        if mode == "500":
            return web.json_response(_error(500, f"{self.name}: internal error", "server_error"), status=500)
        if mode == "503":
            return web.json_response(_error(503, f"{self.name}: service unavailable", "server_error"), status=503)
        if mode == "429":
            return web.json_response(
                _error(429, f"{self.name}: rate limit reached", "requests", "rate_limit_exceeded"),
                status=429,
                headers={"retry-after": f"{self.retry_after:g}"},
            )
        if mode == "400":
            return web.json_response(
                _error(400, f"{self.name}: invalid 'temperature'", "invalid_request_error"), status=400
            )
        if mode == "context_length":
            return web.json_response(
                _error(
                    400,
                    f"{self.name}: This model's maximum context length is 8192 tokens.",
                    "invalid_request_error",
                    "context_length_exceeded",
                ),
                status=400,
            )
        if mode == "refused":  # a connection accepted just before the listener closed
            self._abort(request)
            return web.Response()
        if mode == "hang" or (mode == "stall" and not stream):
            await asyncio.sleep(self.hang_s)
            return web.json_response(self._completion(model))
        if mode == "reset_body" or (mode == "reset_stream" and not stream):
            return await self._reset_body(request, model, stream)
        if mode in ("reset_stream", "stall"):
            return await self._stream(request, model, payload, cut=True, stall=mode == "stall")
        if mode == "garbage":
            if stream:
                resp = await self._start_sse(request)
                await resp.write(b"data: {this is not json\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            return web.Response(body=b"<html>upstream exploded</html>", content_type="text/html")
        if mode == "drip":
            resp = web.StreamResponse(headers={"content-type": "text/event-stream" if stream else "application/json"})
            await resp.prepare(request)
            for _ in range(int(self.hang_s / self.drip_s)):
                await resp.write(b"\n" if stream else b" ")
                await asyncio.sleep(self.drip_s)
            await resp.write_eof()
            return resp
        # ok / slow
        wait = self.first_byte_delay + (self.slow_s if mode == "slow" else 0.0)
        if wait:
            await asyncio.sleep(wait)
        if not stream:
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(body=orjson.dumps(self._completion(model)), content_type="application/json")
        return await self._stream(request, model, payload, cut=False)

    def _abort(self, request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _reset_body(self, request: web.Request, model: str, stream: bool) -> web.StreamResponse:
        if stream:
            resp = await self._start_sse(request)
            frame = b"data: " + orjson.dumps(self._chunk(model, {"role": "assistant", "content": ""}))
            await resp.write(frame[: len(frame) // 2])
        else:
            body = orjson.dumps(self._completion(model))
            resp = web.StreamResponse(headers={"content-type": "application/json"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
        await asyncio.sleep(0.005)  # let the partial bytes leave before the cut
        self._abort(request)
        return resp

    async def _start_sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        return resp

    async def _stream(
        self, request: web.Request, model: str, payload: dict[str, Any], *, cut: bool, stall: bool = False
    ) -> web.StreamResponse:
        resp = await self._start_sse(request)
        frames = [self._chunk(model, {"role": "assistant", "content": ""})]
        if cut:
            frames.append(self._chunk(model, {"content": self.partial}))
        else:
            words = self.text.split(" ")
            pieces = [w + " " for w in words[:-1]] + [words[-1]]
            frames.extend(self._chunk(model, {"content": p}) for p in pieces if p)
            frames.append(self._chunk(model, {}, finish="stop"))
            opts = payload.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage"):
                frames.append(usage_chunk(usage(5, len(pieces)), model=model, id=f"chatcmpl-{self.name}"))
        for i, frame in enumerate(frames):
            if i and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await resp.write(b"data: " + orjson.dumps(frame) + b"\n\n")
        if stall:
            await asyncio.sleep(self.hang_s)
        if cut:
            await asyncio.sleep(0.005)
            self._abort(request)
            return resp
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _completion(self, model: str) -> dict[str, Any]:
        return completion(self.text, model=model, id=f"chatcmpl-{self.name}", tokens=usage(5, 3), refusal=None)

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(delta, finish, model=model, id=f"chatcmpl-{self.name}")
