"""Make any usage record storable: every field within what its column holds, on SQLite and PostgreSQL.

A record is built from client input (model names, ``x-request-id``) and upstream answers (token
counts); one value the database refuses (a NUL byte, a string over its column length, an integer
over 64 bits, NaN) must never fail a batch insert. :func:`sanitize_record` normalises a record:

- ``request_id``: ``[A-Za-z0-9._:-]{1,128}``, else replaced with a generated ``req_<hex>``;
- strings: control characters (NUL included) removed, cut to their column length;
- integers: clamped to the signed 64-bit range (token columns are BIGINT), ``status`` and
  ``attempts`` to 32 bits; a non-number becomes 0;
- floats: NaN and infinities become 0 (costs, latencies), a negative cost 0.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from fluxway.request_id import new_request_id, normalise_request_id
from fluxway.store.tables import usage_records

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

_STRING_LENGTHS: dict[str, int | None] = {}
_INT_BOUNDS: dict[str, int] = {}
_FLOATS: set[str] = set()
_BOOLS: set[str] = set()
for _col in usage_records.columns:
    if isinstance(_col.type, sa.String):  # Text included (length None)
        _STRING_LENGTHS[_col.name] = _col.type.length
    elif isinstance(_col.type, sa.BigInteger):
        _INT_BOUNDS[_col.name] = INT64_MAX
    elif isinstance(_col.type, sa.Integer):
        _INT_BOUNDS[_col.name] = INT32_MAX
    elif isinstance(_col.type, sa.Boolean):
        _BOOLS.add(_col.name)
    elif isinstance(_col.type, sa.Float):
        _FLOATS.add(_col.name)
del _col
_NON_NEGATIVE = {"cost_usd", "latency_ms", "ttft_ms"}


def clean_text(value: Any, length: int | None) -> str:
    """A string without control characters, at most ``length`` characters."""
    s = value if isinstance(value, str) else str(value)
    if _CONTROL_RE.search(s):
        s = _CONTROL_RE.sub("", s)
    # Lone surrogates cannot be encoded as UTF-8 (PostgreSQL refuses them).
    s = s.encode("utf-8", "replace").decode("utf-8")
    if length is not None and len(s) > length:
        s = s[:length]
    return s


def clean_int(value: Any, bound: int) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    if not isinstance(value, int):
        try:
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            return 0
    n: int = value
    return max(-bound - 1, min(bound, n))


def clean_float(value: Any, *, non_negative: bool) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not math.isfinite(f) or (non_negative and f < 0):
        return 0.0
    return f


_NULLABLE = frozenset(c.name for c in usage_records.columns if c.nullable)
_INT_FIELDS = tuple((name, bound, name in _NULLABLE) for name, bound in _INT_BOUNDS.items())
_FLOAT_FIELDS = tuple((name, name in _NON_NEGATIVE, name in _NULLABLE) for name in sorted(_FLOATS))
_TEXT_FIELDS = tuple((name, length) for name, length in _STRING_LENGTHS.items() if name != "request_id")


def sanitize_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` that every supported database accepts (see the module docstring).

    It runs for every record in the flush loop, so the common case (printable ASCII, in-range
    numbers) takes a fast path of type checks; only odd values pay for the cleaning.
    """
    get = record.get
    out: dict[str, Any] = {}
    rid = get("request_id")
    if rid is not None:
        out["request_id"] = (normalise_request_id(rid) if isinstance(rid, str) else None) or new_request_id()
    else:
        out["request_id"] = None
    for name, length in _TEXT_FIELDS:
        v = get(name)
        if v is None:
            out[name] = None
        elif type(v) is str and v.isascii() and v.isprintable() and (length is None or len(v) <= length):
            out[name] = v
        else:
            out[name] = clean_text(v, length)
    if not out.get("id"):
        out["id"] = os.urandom(16).hex()
    if not out.get("day"):
        out["day"] = "0000-00-00"
    for name, bound, nullable in _INT_FIELDS:
        v = get(name)
        if type(v) is int and -bound - 1 <= v <= bound:
            out[name] = v
        else:
            out[name] = None if v is None and nullable else clean_int(v if v is not None else 0, bound)
    for name, non_negative, nullable in _FLOAT_FIELDS:
        v = get(name)
        if type(v) is float and math.isfinite(v) and (v >= 0 or not non_negative):
            out[name] = v
        else:
            f = clean_float(v, non_negative=non_negative)
            out[name] = f if f is not None or nullable else 0.0
    for name in _BOOLS:
        out[name] = bool(get(name, name == "price_known"))
    return out
