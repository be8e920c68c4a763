"""The AWS binary event-stream framing (``application/vnd.amazon.eventstream``), pure and incremental.

One message on the wire::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers (name len u8, name, value type u8, value)* | payload | message CRC32 (u32)

All integers are big-endian; the prelude CRC covers the first 8 bytes, the message CRC everything
before it. :class:`EventStreamDecoder` takes bytes split anywhere and returns whole messages;
:func:`encode_message` builds one (for tests and fake upstreams).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from fluxway.canonical import ErrorKind, UpstreamError

_PRELUDE = 12
_MIN_MESSAGE = _PRELUDE + 4
MAX_MESSAGE = 16 * 1024 * 1024
MAX_HEADERS = 128 * 1024

HeaderValue = bool | int | bytes | str | uuid.UUID


@dataclass(slots=True)
class EventMessage:
    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _protocol(msg: str) -> UpstreamError:
    return UpstreamError(ErrorKind.PROTOCOL, f"malformed event stream: {msg}")


def parse_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    i, n = 0, len(data)
    try:
        while i < n:
            name_len = data[i]
            i += 1
            name = data[i : i + name_len].decode("utf-8")
            i += name_len
            vtype = data[i]
            i += 1
            value: HeaderValue
            if vtype == 0:
                value = True
            elif vtype == 1:
                value = False
            elif vtype == 2:
                value = struct.unpack_from(">b", data, i)[0]
                i += 1
            elif vtype == 3:
                value = struct.unpack_from(">h", data, i)[0]
                i += 2
            elif vtype == 4:
                value = struct.unpack_from(">i", data, i)[0]
                i += 4
            elif vtype in (5, 8):  # int64, timestamp (ms since epoch)
                value = struct.unpack_from(">q", data, i)[0]
                i += 8
            elif vtype in (6, 7):
                (length,) = struct.unpack_from(">H", data, i)
                i += 2
                raw = data[i : i + length]
                if len(raw) != length:
                    raise _protocol("header value is cut short")
                i += length
                value = raw.decode("utf-8") if vtype == 7 else bytes(raw)
            elif vtype == 9:
                raw = data[i : i + 16]
                if len(raw) != 16:
                    raise _protocol("header value is cut short")
                value = uuid.UUID(bytes=bytes(raw))
                i += 16
            else:
                raise _protocol(f"unknown header value type {vtype}")
            if i > n:
                raise _protocol("header is cut short")
            headers[name] = value
    except (struct.error, IndexError, UnicodeDecodeError):
        raise _protocol("header is cut short or not UTF-8") from None
    return headers


class EventStreamDecoder:
    """Feed bytes as they arrive; get back the complete messages, CRCs verified."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_message_bytes: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message_bytes

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[EventMessage]:
        if data:
            self._buf += data
        out: list[EventMessage] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= _PRELUDE:
            total, hlen, prelude_crc = struct.unpack_from(">III", buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                raise _protocol("prelude CRC mismatch")
            if total < _MIN_MESSAGE or total > MAX_MESSAGE:
                raise _protocol(f"message length {total} out of range")
            if total > self._max:
                raise _protocol(f"message of {total} bytes is larger than max_event_bytes ({self._max} bytes)")
            if hlen > MAX_HEADERS or hlen > total - _MIN_MESSAGE:
                raise _protocol(f"headers length {hlen} out of range")
            if len(buf) - pos < total:
                break
            end = pos + total
            (message_crc,) = struct.unpack_from(">I", buf, end - 4)
            if zlib.crc32(buf[pos : end - 4]) != message_crc:
                raise _protocol("message CRC mismatch")
            hstart = pos + _PRELUDE
            headers = parse_headers(bytes(buf[hstart : hstart + hlen]))
            out.append(EventMessage(headers, bytes(buf[hstart + hlen : end - 4])))
            pos = end
        if pos:
            del buf[:pos]
        return out

    def close(self) -> None:
        """The stream ended: raise if a message was cut short."""
        if self._buf:
            raise _protocol(f"stream ended inside a message ({len(self._buf)} bytes left over)")


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    head = struct.pack(">B", len(raw_name)) + raw_name
    if value is True:
        return head + b"\x00"
    if value is False:
        return head + b"\x01"
    if isinstance(value, int):
        return head + struct.pack(">Bq", 5, value)
    if isinstance(value, bytes):
        return head + struct.pack(">BH", 6, len(value)) + value
    if isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    raw = value.encode("utf-8")
    return head + struct.pack(">BH", 7, len(raw)) + raw


def encode_message(headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    """One event-stream message (strings as type 7, ints as int64, bytes as type 6)."""
    hdr = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = _PRELUDE + len(hdr) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdr))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + hdr + payload
    return body + struct.pack(">I", zlib.crc32(body))


def encode_event(event_type: str, payload: bytes) -> bytes:
    """A Bedrock-style event message (``:message-type event``, JSON payload)."""
    return encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, payload
    )


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    """A Bedrock-style modelled exception message (``:message-type exception``)."""
    return encode_message(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        payload,
    )
