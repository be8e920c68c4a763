"""Server-sent events: an incremental decoder and an encoder (pure, no I/O).

The decoder follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; a line starting
with ``:`` is a comment; ``data:`` lines of one event are joined with ``\\n``; a blank line
dispatches the event; one leading space after the colon is dropped. Input may be split anywhere,
including between the CR and LF of one line ending.

One event (its pending line plus the data lines gathered so far) may hold at most
``max_event_bytes``; an upstream that sends more without dispatching it fails with a PROTOCOL
:class:`~fluxway.canonical.UpstreamError` instead of being buffered without limit. A line that
arrives in many pieces is gathered in a ``bytearray`` (amortised appends, and only the new piece is
searched for a line ending), so a huge newline-less event costs linear, not quadratic, time.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxway.canonical import ErrorKind, UpstreamError

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events completed so far."""

    __slots__ = ("_buf", "_data", "_event", "_first", "_id", "_max", "_over", "_retry", "_size", "_skip_lf")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf: bytes | bytearray = b""
        self._max = max_event_bytes
        self._size = 0  # bytes of the data lines of the event being gathered
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False
        self._first = True
        self._over = False  # the bound was passed after events completed in the same feed

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._over:
            raise self._too_large()
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._buf and not self._first and b"\n" not in chunk and b"\r" not in chunk:
            # More of a pending line: append (amortised) and check the bound, nothing to scan.
            if not isinstance(self._buf, bytearray):
                self._buf = bytearray(self._buf)
            self._buf += chunk
            self._check(len(self._buf))
            return []
        buf = self._buf + chunk if self._buf else chunk
        if self._first and buf:
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
            elif len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._first = False
        events: list[SSEEvent] = []
        try:
            return self._scan(buf, events)
        except UpstreamError:
            if not events:
                raise
            # The events completed before the oversized one are delivered; the next call fails.
            self._over = True
            self._buf, self._data, self._size = b"", [], 0
            return events

    def _scan(self, buf: bytes | bytearray, events: list[SSEEvent]) -> list[SSEEvent]:
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
                else:
                    nxt = cr + 1
                    self._skip_lf = True
            elif lf >= 0:
                end = lf
                nxt = lf + 1
            else:
                break
            self._line(buf[start:end], events)
            start = nxt
        self._buf = buf[start:]
        if self._buf:
            self._check(len(self._buf))
        return events

    def _check(self, pending: int) -> None:
        if self._size + pending > self._max:
            raise self._too_large()

    def _too_large(self) -> UpstreamError:
        return UpstreamError(
            ErrorKind.PROTOCOL, f"upstream sent a stream event larger than max_event_bytes ({self._max} bytes)"
        )

    def flush(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line is still dispatched."""
        if self._over:
            raise self._too_large()
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf, events)
            self._buf = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes | bytearray, events: list[SSEEvent]) -> None:
        if not raw:
            if self._data or self._event is not None:
                events.append(SSEEvent("\n".join(self._data), self._event, self._id, self._retry))
            self._data = []
            self._size = 0
            self._event = None
            self._retry = None
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._size += len(raw)
            self._check(0)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)


def encode(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame carrying ``data`` (which must not contain newlines, as JSON from orjson)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
