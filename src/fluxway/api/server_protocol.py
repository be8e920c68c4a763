"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol with the guards a public edge needs.

uvicorn's httptools protocol has no header read timeout, no header size limit and no connection
cap, so a slow or hostile client could hold connections (and file descriptors) forever. This
subclass adds, per connection and with no per-request await:

* a header timeout: a connection must deliver a request's line and headers within
  ``server.header_timeout_s`` of connecting (or of that request's first byte); else 408;
* a header size limit: a request line plus headers above ``server.max_header_bytes``: 431;
* a connection cap: at ``server.max_connections`` open connections, a new one first evicts the
  connection that has waited longest without sending a complete request head (idle keep-alive,
  slowloris; it gets 503), so clients that do send requests keep being served; only when every
  connection is busy is the new one answered 503 with ``retry-after`` and closed, long before the
  process runs out of file descriptors.

Refusals are complete HTTP answers in the OpenAI error shape (the Anthropic shape for
``/v1/messages``), sent with ``connection: close``; the socket is half-closed and drained briefly so
the client reads the answer instead of a reset.

The body timeout (``server.body_timeout_s``) is armed here only when a body is still incomplete
after a read (no timer at all for a request that arrives in one packet); when it fires, the app's
pending ``receive`` wakes with the scope flagged, and the app answers 408 in the caller's shape and
records the call (see :func:`fluxway.api.asgi.read_body`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fluxway.api.asgi import BODY_TIMED_OUT, GUARDED  # scope keys: protocol enforces / body timed out
from fluxway.config import ServerConfig
from fluxway.errors import GatewayError, error_body

_LINGER_S = 0.5  # how long a refused connection is drained before it is closed


class _HeadTooLarge(Exception):
    """Raised inside a parser callback; httptools turns it into an HttpParserError."""


def _refusal(status: int, message: str, code: str, *, anthropic: bool, retry_after: int | None = None) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = orjson.dumps(error_body(GatewayError(status, message, type=kind, code=code), anthropic=anthropic))
    head = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n",
    ]
    if retry_after is not None:
        head.append(b"retry-after: " + str(retry_after).encode() + b"\r\n")
    return b"".join(head) + b"\r\n" + body


def _server_config(app: object) -> ServerConfig | None:
    """The ``cfg.server`` of the Fluxway app, under whatever middleware uvicorn wrapped it in."""
    for _ in range(4):
        server = getattr(getattr(app, "cfg", None), "server", None)
        if isinstance(server, ServerConfig):
            return server
        app = getattr(app, "app", None)
    return None


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Pass the class itself as uvicorn's ``http=``; it reads its limits from the app's
    ``cfg.server`` (a :class:`~fluxway.app.FluxwayApp`), else keeps the defaults below. Being a
    plain module-level class, it also works with ``--workers N`` (uvicorn imports it by reference)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 65536
    max_connections: int = 10000
    body_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server = _server_config(self.app)
        if isinstance(server, ServerConfig):
            self.header_timeout_s = server.header_timeout_s
            self.max_header_bytes = server.max_header_bytes
            self.max_connections = server.max_connections
            self.body_timeout_s = server.body_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None  # armed only while a body is incomplete
        self._in_head = True  # between a message's end (or the connection's start) and its headers' end
        self._head_raw = 0  # bytes received while in the head
        self._head_parsed = 0  # bytes of request line and headers the parser reported
        self._head_too_big = False
        self._refused = False  # answered and closing: ignore whatever else arrives
        self.url = b""

    # connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.max_connections and len(self.connections) >= self.max_connections and not self._evict_one():
            self.transport = transport
            self.logger.warning("connection refused: %d connections open (server.max_connections)",
                                len(self.connections))
            self._refuse(503, "too many open connections; retry shortly", "overloaded", retry_after=1)
            return
        super().connection_made(transport)
        self._waiting[self] = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._disarm_head_timer()
        self._disarm_body_timer()
        if self._refused and self.flow is None:  # refused at connect: never tracked, nothing to unwind
            self.parser = None
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining before the close
        if self._in_head:
            self._head_raw += len(data)
        super().data_received(data)
        if self._in_head:
            if self._head_raw > self.max_header_bytes and not self._refused and not self.transport.is_closing():
                self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes", "headers_too_large")
        elif self._body_timer is None and self.cycle is not None and self.cycle.more_body:
            # The headers are in, the body is not (a request in one packet never gets here).
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_big:
            self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes", "headers_too_large")
            return
        super().send_400_response(msg)

    # parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[GUARDED] = True  # type: ignore[literal-required]
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._waiting.pop(self, None)
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        super().on_message_complete()
        self._in_head = True
        self._waiting[self] = None  # idle again: evictable, newest last
        self._head_raw = 0
        self._head_parsed = 0

    # guards --------------------------------------------------------------------------------

    @property
    def _waiting(self) -> dict[GuardedHttpToolsProtocol, None]:
        """This server's connections waiting for a request head, oldest first (shared by its
        connections through uvicorn's per-server state, not module state)."""
        state = self.server_state
        waiting: dict[GuardedHttpToolsProtocol, None] | None = getattr(state, "fluxway_waiting", None)
        if waiting is None:
            waiting = {}
            state.fluxway_waiting = waiting  # type: ignore[attr-defined]
        return waiting

    def _evict_one(self) -> bool:
        """Close the connection waiting longest for a request head; False if none is waiting."""
        waiting = self._waiting
        while waiting:
            victim = next(iter(waiting))
            del waiting[victim]
            if victim._refused or victim.transport is None or victim.transport.is_closing():
                continue
            if victim.cycle is not None and not victim.cycle.response_complete:
                continue  # mid-answer (pipelined): not idle
            victim._refuse(503, "too many open connections; this idle one was closed", "overloaded",
                           retry_after=1)
            victim.connections.discard(victim)  # its slot is free now, not after the linger
            return True
        return False

    def _count_head(self, n: int) -> None:
        self._head_parsed += n
        if self._head_parsed > self.max_header_bytes:
            self._head_too_big = True
            raise _HeadTooLarge

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self._refused:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        """Wake the app's pending ``receive`` with what arrived, flagged: it answers 408 in the
        caller's shape (see :func:`fluxway.api.asgi.read_body`)."""
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body:
            return
        if cycle.response_complete:  # answered already (a 401, say) while the body still trickles in
            if not self.transport.is_closing():
                self.transport.close()
            return
        cycle.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
        cycle.message_event.set()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined request is still being answered; the keep-alive rules take over after it
        self._refuse(408, f"request headers not received within {self.header_timeout_s:g} s", "request_timeout")

    def _refuse(self, status: int, message: str, code: str, *, retry_after: int | None = None) -> None:
        """Answer ``status`` and close: half-close first, drain briefly, so the answer is read."""
        self._refused = True
        self._waiting.pop(self, None)
        self._disarm_head_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        transport.write(_refusal(status, message, code, anthropic=b"/messages" in self.url,
                                 retry_after=retry_after))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(_LINGER_S, transport.close)
        else:
            transport.close()


def raise_fd_limit(max_connections: int) -> None:
    """Lift the soft file-descriptor limit toward the hard one so ``max_connections`` (plus the
    upstream pool, the store and the spool) fits; warn if it cannot."""
    import logging
    import resource

    want = max_connections + 1024 if max_connections else 65536
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if max_connections and soft != resource.RLIM_INFINITY and soft < want:
        logging.getLogger("fluxway").warning(
            "file descriptor limit %d is below server.max_connections %d + 1024: lower the cap or "
            "raise the limit (ulimit -n), else connections beyond the limit fail instead of getting 503",
            soft, max_connections)
