"""The SSE decoder against the WHATWG rules, split at every possible byte boundary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxway.canonical import ErrorKind, UpstreamError
from fluxway.sse import SSEDecoder, SSEEvent, encode

STREAM = (
    b": keep-alive comment\n\n"
    b"event: message_start\r\n"
    b"data: {\"a\": 1}\r\n\r\n"
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n\n"
    b"data:no-space\rdata: cr-only\r\r"
    b"retry: 1500\ndata: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("line one\nline two", None, "7"),
    SSEEvent("no-space\ncr-only", None, "7"),
    SSEEvent("[DONE]", None, "7", 1500),
]


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        out.extend(dec.feed(data[prev:cut]))
        prev = cut
    out.extend(dec.flush())
    return out


def test_whole_stream() -> None:
    assert decode_in_pieces(STREAM, []) == EXPECTED


def test_every_single_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert decode_in_pieces(STREAM, [i]) == EXPECTED, i


def test_byte_at_a_time() -> None:
    assert decode_in_pieces(STREAM, list(range(len(STREAM)))) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split(cuts: list[int]) -> None:
    assert decode_in_pieces(STREAM, cuts) == EXPECTED


def test_bom_and_final_event_without_blank_line() -> None:
    assert decode_in_pieces(b"\xef\xbb\xbfdata: x\n\ndata: tail", [1, 2]) == [SSEEvent("x"), SSEEvent("tail")]


def test_empty_data_and_field_only_lines() -> None:
    assert decode_in_pieces(b"data\n\ndata:\n\n", []) == [SSEEvent(""), SSEEvent("")]


def test_encode_roundtrip() -> None:
    frame = encode(b'{"x":1}', "delta") + encode(b"[DONE]")
    assert decode_in_pieces(frame, []) == [SSEEvent('{"x":1}', "delta"), SSEEvent("[DONE]")]


def test_an_event_over_max_event_bytes_fails_and_earlier_events_are_kept() -> None:
    d = SSEDecoder(max_event_bytes=1024)
    assert [e.data for e in d.feed(b"data: a\n\ndata: ")] == ["a"]
    for _ in range(15):
        assert d.feed(b"x" * 64) == []  # a pending line grows: appended, not rescanned
    with pytest.raises(UpstreamError) as info:
        d.feed(b"x" * 64)
    assert info.value.kind is ErrorKind.PROTOCOL and "max_event_bytes" in info.value.message
    # Many data lines of one event count together.
    d = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(UpstreamError):
        d.feed(b"data: " + b"y" * 100 + b"\n" * 1 + (b"data: " + b"y" * 100 + b"\n") * 10)
    # Events completed in the same read as the oversized one are delivered first; the next read fails.
    d = SSEDecoder(max_event_bytes=1024)
    assert [e.data for e in d.feed(b"data: ok\n\ndata: " + b"z" * 2000)] == ["ok"]
    with pytest.raises(UpstreamError):
        d.feed(b"more")
    with pytest.raises(UpstreamError):
        d.flush()
