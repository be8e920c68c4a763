"""W3C Trace Context (``traceparent`` / ``tracestate``): parsing the caller's, writing ours. Pure."""

from __future__ import annotations

from dataclasses import dataclass

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_TRACESTATE = 512  # the W3C limit for what a vendor must propagate


@dataclass(frozen=True, slots=True)
class Parent:
    """The caller's span context: the trace this call joins and the span it is a child of."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    sampled: bool
    trace_state: str = ""


def _is_hex(s: str) -> bool:
    return all(c in _HEX for c in s)


def parse_traceparent(value: str | None, tracestate: str | None = None) -> Parent | None:
    """The caller's context from a ``traceparent`` header; None when absent or malformed (a new
    trace then starts). Version ``00`` is read strictly; a later version by its first four fields."""
    if not value:
        return None
    v = value.strip().lower()
    parts = v.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if len(version) != 2 or not _is_hex(version) or version == "ff":
        return None
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    if not (_is_hex(trace_id) and _is_hex(span_id) and _is_hex(flags)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = (tracestate or "").strip()
    if len(state) > _MAX_TRACESTATE:
        state = ""  # oversized: dropped rather than cut in the middle of an entry
    return Parent(bytes.fromhex(trace_id), bytes.fromhex(span_id), bool(int(flags, 16) & 1), state)


def format_traceparent(trace_id: bytes, span_id: bytes, sampled: bool = True) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-{'01' if sampled else '00'}"
