"""The AWS event-stream decoder: byte-split feeding, CRC checks, header types, botocore cross-check."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer

from fluxway.adapters.eventstream import (
    EventMessage,
    EventStreamDecoder,
    encode_event,
    encode_exception,
    encode_message,
    parse_headers,
)
from fluxway.canonical import ErrorKind, UpstreamError

MESSAGES = [
    encode_event("messageStart", b'{"role":"assistant","p":"abcd"}'),
    encode_event("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}'.encode()),
    encode_message({":message-type": "event", "flag": True, "off": False, "n": 7, "blob": b"\x00\x01",
                    "id": uuid.UUID("12345678-1234-5678-1234-567812345678")}, b""),
    encode_exception("throttlingException", b'{"message":"Too many requests"}'),
]
STREAM = b"".join(MESSAGES)


def _feed_split(data: bytes, cut: int) -> list[EventMessage]:
    dec = EventStreamDecoder()
    out = dec.feed(data[:cut]) + dec.feed(data[cut:])
    dec.close()
    return out


def test_decodes_whole_stream() -> None:
    dec = EventStreamDecoder()
    msgs = dec.feed(STREAM)
    dec.close()
    assert [m.header(":event-type") for m in msgs] == ["messageStart", "contentBlockDelta", None, None]
    assert msgs[1].payload == '{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}'.encode()
    assert msgs[2].headers == {":message-type": "event", "flag": True, "off": False, "n": 7, "blob": b"\x00\x01",
                               "id": uuid.UUID("12345678-1234-5678-1234-567812345678")}
    assert msgs[3].header(":exception-type") == "throttlingException"


def test_every_byte_split_gives_the_same_messages() -> None:
    expected = EventStreamDecoder().feed(STREAM)
    for cut in range(len(STREAM) + 1):
        assert _feed_split(STREAM, cut) == expected, cut


def test_one_byte_at_a_time() -> None:
    dec = EventStreamDecoder()
    out: list[EventMessage] = []
    for i in range(len(STREAM)):
        out += dec.feed(STREAM[i : i + 1])
    assert len(out) == len(MESSAGES)
    assert dec.pending == 0


def test_matches_botocore_buffer() -> None:
    buf = EventStreamBuffer()
    buf.add_data(STREAM)
    theirs = list(buf)
    ours = EventStreamDecoder().feed(STREAM)
    assert len(theirs) == len(ours)
    for t, o in zip(theirs, ours, strict=True):
        assert t.payload == o.payload
        # botocore leaves UUID headers as their 16 raw bytes
        assert dict(t.headers) == {k: v.bytes if isinstance(v, uuid.UUID) else v for k, v in o.headers.items()}


def test_botocore_encoded_header_types_decode() -> None:
    # int8 / int16 / int32 / timestamp are never produced by our encoder: build them by hand.
    raw = (
        b"\x01a" + struct.pack(">Bb", 2, -5)
        + b"\x01b" + struct.pack(">Bh", 3, -300)
        + b"\x01c" + struct.pack(">Bi", 4, 70000)
        + b"\x01d" + struct.pack(">Bq", 8, 1700000000000)
    )
    assert parse_headers(raw) == {"a": -5, "b": -300, "c": 70000, "d": 1700000000000}
    prelude = struct.pack(">II", 12 + len(raw) + 4, len(raw))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw
    msg += struct.pack(">I", zlib.crc32(msg))
    buf = EventStreamBuffer()
    buf.add_data(msg)
    assert dict(next(iter(buf)).headers) == EventStreamDecoder().feed(msg)[0].headers


def test_close_with_partial_message_raises() -> None:
    dec = EventStreamDecoder()
    assert dec.feed(MESSAGES[0][:-1]) == []
    with pytest.raises(UpstreamError) as err:
        dec.close()
    assert err.value.kind is ErrorKind.PROTOCOL


@pytest.mark.parametrize("where", ["prelude", "message"])
def test_crc_mismatch_raises(where: str) -> None:
    msg = bytearray(MESSAGES[1])
    if where == "prelude":
        msg[8] ^= 0xFF
    else:
        msg[-6] ^= 0xFF  # inside the payload
    with pytest.raises(UpstreamError, match="CRC") as err:
        EventStreamDecoder().feed(bytes(msg))
    assert err.value.kind is ErrorKind.PROTOCOL


def test_absurd_lengths_raise() -> None:
    prelude = struct.pack(">II", 8, 0)
    with pytest.raises(UpstreamError, match="out of range"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    prelude = struct.pack(">II", 100, 200)
    with pytest.raises(UpstreamError, match="out of range"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_unknown_header_type_raises() -> None:
    with pytest.raises(UpstreamError, match="unknown header value type"):
        parse_headers(b"\x01x\x0f")
    with pytest.raises(UpstreamError):
        parse_headers(b"\x01x\x07\x00\x09abc")
