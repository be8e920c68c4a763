"""Usage rollups: per-bucket totals kept in step with ``usage_records`` (table ``usage_rollups``).

Every stored record adds to one row per grain (minute, hour, day), scope and dimension: the
gateway-wide scope ("") for dimensions ``all``, key, team, model, provider, status and tag, and the
record's key (its own lines, for ``/v1/me/usage``) for all of them but ``key``. :func:`deltas` turns
records into those additions (a record counts once per tag it carries; a record without tags counts
under the tag ""), :func:`upsert` adds them in the caller's transaction (``INSERT .. ON CONFLICT DO
UPDATE SET n = n + excluded.n`` on SQLite and PostgreSQL), and a replaced record (a stream's
provisional one) is taken back out with ``sign=-1``. Rows are written in key order, so two writers
lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from fluxway.store.tables import usage_rollups

MINUTE, HOUR, DAY = 60, 3600, 86400
GRAINS: tuple[int, ...] = (MINUTE, HOUR, DAY)
GLOBAL = ""  # the scope of the gateway-wide lines
# Dimension -> the record field it groups by ("all": every record under one value).
DIMENSIONS: dict[str, str | None] = {
    "all": None,
    "key": "key_id",
    "team": "team",
    "model": "model",
    "provider": "provider",
    "status": "status",
    "tag": "tags",
}
_PER_KEY = tuple(d for d in DIMENSIONS if d != "key")  # a key's own lines (its "key" line is its "all")
# The record fields :func:`deltas` reads (what a caller must select).
RECORD_FIELDS: tuple[str, ...] = (
    "created_at", "key_id", "team", "model", "provider", "status", "tags", "prompt_tokens",
    "completion_tokens", "cached_tokens", "cost_usd", "latency_ms",
)
MEASURES: tuple[str, ...] = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens",
    "cost_usd", "latency_ms_sum", "latency_count",
)
RollupKey = tuple[str, str, int, int, str]  # scope, dim, grain, bucket, value
Sums = list[float]


def split_tags(value: Any) -> list[str]:
    """The tags stored on a record (comma-joined), "" standing for none."""
    if not value or not isinstance(value, str):
        return [""]
    return [t for t in value.split(",") if t] or [""]


def measures(row: Mapping[str, Any], sign: int = 1) -> Sums:
    lat = row.get("latency_ms")
    status = row.get("status") or 0
    return [
        sign,
        sign if status >= 400 else 0,
        sign * int(row.get("prompt_tokens") or 0),
        sign * int(row.get("completion_tokens") or 0),
        sign * int(row.get("cached_tokens") or 0),
        sign * float(row.get("cost_usd") or 0.0),
        sign * float(lat) if lat is not None else 0.0,
        sign if lat is not None else 0,
    ]


def _add(acc: dict[RollupKey, Sums], key: RollupKey, m: Sums) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = list(m)
    else:
        for i, v in enumerate(m):
            cur[i] += v


def deltas(rows: Iterable[Mapping[str, Any]], sign: int = 1, acc: dict[RollupKey, Sums] | None = None
           ) -> dict[RollupKey, Sums]:
    """What ``rows`` (sanitised usage records) add to the rollups (take away with ``sign=-1``)."""
    minutes: dict[RollupKey, Sums] = {}
    for row in rows:
        m = measures(row, sign)
        t = row.get("created_at") or 0.0
        bucket = int(t) - int(t) % MINUTE
        key_id = row.get("key_id")
        values = {
            "all": "",
            "key": key_id or "",
            "team": row.get("team") or "",
            "model": row.get("model") or "",
            "provider": row.get("provider") or "",
            "status": str(row.get("status") or 0),
        }
        for dim, value in values.items():
            _add(minutes, (GLOBAL, dim, MINUTE, bucket, value), m)
        tags = split_tags(row.get("tags"))
        for tag in tags:
            _add(minutes, (GLOBAL, "tag", MINUTE, bucket, tag), m)
        if key_id:
            for dim in _PER_KEY:
                if dim == "tag":
                    for tag in tags:
                        _add(minutes, (key_id, "tag", MINUTE, bucket, tag), m)
                else:
                    _add(minutes, (key_id, dim, MINUTE, bucket, values[dim]), m)
    out = acc if acc is not None else {}
    for (scope, dim, _, bucket, value), m in minutes.items():
        _add(out, (scope, dim, MINUTE, bucket, value), m)
        _add(out, (scope, dim, HOUR, bucket - bucket % HOUR, value), m)
        _add(out, (scope, dim, DAY, bucket - bucket % DAY, value), m)
    return out


def _statement(dialect: str) -> Any:
    if dialect == "postgresql":
        ins: Any = postgresql.insert(usage_rollups)
    elif dialect == "sqlite":
        ins = sqlite.insert(usage_rollups)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise ValueError(f"unsupported database {dialect}")
    c = usage_rollups.c
    return ins.on_conflict_do_update(
        index_elements=["scope", "dim", "grain", "bucket", "value"],
        set_={m: c[m] + ins.excluded[m] for m in MEASURES},
    )


def _params(acc: Mapping[RollupKey, Sums]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(acc):
        m = acc[key]
        if not any(m):  # a record replaced by an identical one
            continue
        scope, dim, grain, bucket, value = key
        row: dict[str, Any] = {"scope": scope, "dim": dim, "grain": grain, "bucket": bucket, "value": value}
        for name, v in zip(MEASURES, m, strict=True):
            row[name] = float(v) if name in ("cost_usd", "latency_ms_sum") else int(v)
        out.append(row)
    return out


async def upsert(conn: AsyncConnection, acc: Mapping[RollupKey, Sums]) -> None:
    """Add ``acc`` to the rollups inside ``conn``'s transaction."""
    params = _params(acc)
    if params:
        await conn.execute(_statement(conn.dialect.name), params)


def upsert_sync(conn: Connection, acc: Mapping[RollupKey, Sums]) -> None:
    params = _params(acc)
    if params:
        conn.execute(_statement(conn.dialect.name), params)




def backfill(conn: Connection, chunk: int = 20_000) -> int:
    """Rebuild the rollups from every stored record (at migration time); returns the records read."""
    from fluxway.store.tables import usage_records

    conn.execute(sa.delete(usage_rollups))
    c = usage_records.c
    cols = [c[name] for name in RECORD_FIELDS]
    last: str | None = None
    total = 0
    while True:
        q = sa.select(c.id, *cols).order_by(c.id).limit(chunk)
        if last is not None:
            q = q.where(c.id > last)
        rows = [dict(r) for r in conn.execute(q).mappings()]
        if not rows:
            return total
        upsert_sync(conn, deltas(rows))
        total += len(rows)
        last = rows[-1]["id"]
