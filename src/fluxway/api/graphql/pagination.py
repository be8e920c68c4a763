"""Cursor connections: ``first``/``after`` over an ordered list, ``edges``/``pageInfo`` out.

A cursor is the sort key of an item (base64url of its JSON), opaque to clients: a page after it
holds the items whose key sorts after it, so a cursor stays valid when items are added or removed.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from fluxway.api.graphql.errors import bad_input

Row = dict[str, Any]
SortKey = tuple[Any, ...]


def page_size(first: int | None, default: int, maximum: int) -> int:
    """The page size ``first`` asks for (``default`` when absent), within 1..``maximum``."""
    if first is None:
        return default
    if not 1 <= first <= maximum:
        raise bad_input(f"'first' must be between 1 and {maximum}", param="first")
    return first


def encode(key: SortKey) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode(cursor: str, kinds: tuple[type, ...]) -> SortKey:
    """The sort key in ``cursor``; its parts must be of ``kinds`` (else a bad-input error)."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception:
        raw = None
    ok = isinstance(raw, list) and len(raw) == len(kinds)
    if ok:
        for part, kind in zip(raw, kinds, strict=True):
            number = kind is float and isinstance(part, int | float) and not isinstance(part, bool)
            if not (number and math.isfinite(part)) and not (kind is str and isinstance(part, str)):
                ok = False
    if not ok:
        raise bad_input("invalid cursor", param="after")
    return tuple(float(p) if k is float else p for p, k in zip(raw, kinds, strict=True))


def connection(
    items: Sequence[Row],
    sort_key: Callable[[Row], SortKey],
    kinds: tuple[type, ...],
    *,
    first: int,
    after: str | None,
    out: Callable[[Row], Row],
) -> Row:
    """One page of ``items`` (already in ``sort_key`` order) as a connection; nodes through ``out``.
    Its keys are snake_case, as every value the resolvers return (the schema's fields read them so)."""
    start = 0
    if after is not None:
        at = decode(after, kinds)
        start = next((i for i, it in enumerate(items) if sort_key(it) > at), len(items))
    page = items[start:start + first]
    edges = [{"cursor": encode(sort_key(it)), "node": out(it)} for it in page]
    return {
        "edges": edges,
        "page_info": {
            "has_next_page": start + first < len(items),
            "end_cursor": edges[-1]["cursor"] if edges else None,
        },
        "total_count": len(items),
    }
