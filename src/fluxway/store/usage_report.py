"""Usage aggregates answered from the rollups (:mod:`fluxway.store.rollups`), exact for any range.

A range ``[since, until)`` is cut into whole days in the middle, whole hours and whole minutes
towards its ends, and the seconds before its first and after its last whole minute: the buckets come
from ``usage_rollups`` in one query, the ragged seconds (at most two minutes of records) from
``usage_records`` through its time index, summed and grouped by the database. Grouping by hour
never reads day buckets. Minute rows are kept ``usage.minute_rollups_hours``
(:func:`fluxway.store.usage.UsageStore.prune_minute_rollups`): the minutes of an older range's
edges are read from the records instead (at most two hours of them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.rollups import DAY, GLOBAL, HOUR, MEASURES, MINUTE, split_tags
from fluxway.store.tables import usage_records, usage_rollups

GroupBy = Literal["key", "team", "model", "provider", "tag", "status", "day", "hour"]
GROUPS: tuple[str, ...] = ("key", "team", "model", "provider", "tag", "status", "day", "hour")
Row = dict[str, Any]
Span = tuple[float | None, float | None]  # [start, end), None: unbounded


def _floor(t: float, g: int) -> float:
    return math.floor(t / g) * g


def _ceil(t: float, g: int) -> float:
    return math.ceil(t / g) * g


def plan(since: float | None, until: float | None, coarsest: int = DAY) -> tuple[dict[int, list[Span]], list[Span]]:
    """The bucket spans per grain and the raw spans that together cover ``[since, until)`` once."""
    grains = [g for g in (DAY, HOUR, MINUTE) if g <= coarsest]
    buckets: dict[int, list[Span]] = {g: [] for g in grains}
    raw: list[Span] = []
    if since is not None and until is not None and until <= since:
        return buckets, raw
    lo, hi = since, until
    # From the finest edge inwards: what a grain cannot cover is left to the next finer one.
    edges: list[tuple[float | None, float | None]] = []
    for g in grains:
        a = None if lo is None else _ceil(lo, g)
        b = None if hi is None else _floor(hi, g)
        edges.append((a, b))
    # Walk coarse to fine: the coarsest grain takes [a, b); each finer one the strips around it.
    inner: tuple[float | None, float | None] | None = None
    for g, (a, b) in zip(grains, edges, strict=True):
        if a is not None and b is not None and b <= a:
            continue  # this grain fits nothing; a finer one takes the span
        if inner is None:
            buckets[g].append((a, b))
        else:
            if inner[0] is not None and (a is None or a < inner[0]):
                buckets[g].append((a, inner[0]))
            if inner[1] is not None and (b is None or inner[1] < b):
                buckets[g].append((inner[1], b))
        inner = (a, b)
    if inner is None:
        raw.append((since, until))
    else:
        if inner[0] is not None and lo is not None and lo < inner[0]:
            raw.append((lo, inner[0]))
        if inner[1] is not None and hi is not None and inner[1] < hi:
            raw.append((inner[1], hi))
    return buckets, raw


def minutes_from_records(
    buckets: dict[int, list[Span]], raw: list[Span], horizon: float
) -> tuple[dict[int, list[Span]], list[Span]]:
    """``plan``'s answer with the minute spans before ``horizon`` (where minute rows are pruned)
    moved to the raw spans."""
    minutes = buckets.get(MINUTE)
    if not minutes:
        return buckets, raw
    horizon = _floor(horizon, MINUTE)
    kept: list[Span] = []
    raw = list(raw)
    for a, b in minutes:
        if a is not None and a >= horizon:
            kept.append((a, b))
        elif b is not None and b <= horizon:
            raw.append((a, b))
        else:
            raw.append((a, horizon))
            kept.append((horizon, b))
    return {**buckets, MINUTE: kept}, raw


def _span(col: Any, span: Span) -> Any:
    a, b = span
    parts = []
    if a is not None:
        parts.append(col >= a)
    if b is not None:
        parts.append(col < b)
    return sa.and_(sa.true(), *parts)


def _label(group_by: str, value: Any) -> Any:
    if group_by == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(int(value)))
    if group_by == "hour":
        return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(int(value)))
    if group_by == "status":
        return int(value)
    return value or None


def _raw_group_col(group_by: str, dialect: str) -> Any:
    """What the ragged seconds' records are grouped by, in SQL (tags: the stored tag list, split after)."""
    c = usage_records.c
    if group_by in ("day", "hour"):
        g = DAY if group_by == "day" else HOUR
        if dialect == "postgresql":
            return sa.func.floor(c.created_at / g) * g
        return sa.cast(c.created_at / g, sa.Integer) * g  # SQLite's CAST truncates: times are positive
    return c[{"key": "key_id", "tag": "tags"}.get(group_by, group_by)]


def _raw_sums() -> list[Any]:
    """The measures of :func:`fluxway.store.rollups.measures`, summed by the database."""
    c = usage_records.c
    zero = sa.literal(0)
    return [
        sa.func.count().label("requests"),
        sa.func.sum(sa.case((sa.func.coalesce(c.status, 0) >= 400, 1), else_=0)).label("errors"),
        *(sa.func.sum(sa.func.coalesce(c[n], zero)).label(n)
          for n in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")),
        sa.func.sum(sa.func.coalesce(c.latency_ms, zero)).label("latency_ms_sum"),
        sa.func.count(c.latency_ms).label("latency_count"),
    ]


def _raw_groups(group_by: str, value: Any) -> Iterable[Any]:
    """The groups one SQL group of ragged-second records adds to (a tag list: each of its tags)."""
    if group_by == "tag":
        return split_tags(value)
    if group_by in ("day", "hour"):
        return (int(value or 0),)
    return (str(value) if group_by == "status" else (value or ""),)


async def aggregate(
    engine: AsyncEngine, group_by: str, since: float | None = None, until: float | None = None,
    key_id: str | None = None, minute_horizon: float | None = None,
) -> list[Row]:
    """Totals per group over ``[since, until)``, of every record or of one key's. Minute rows
    before ``minute_horizon`` are taken as pruned."""
    if group_by not in GROUPS:
        raise ValueError(f"unknown group {group_by!r}")
    time_group = group_by in ("day", "hour")
    buckets, raw = plan(since, until, HOUR if group_by == "hour" else DAY)
    if minute_horizon is not None:
        buckets, raw = minutes_from_records(buckets, raw, minute_horizon)
    r = usage_rollups.c
    scope = GLOBAL if key_id is None else key_id
    dim = "all" if time_group or (key_id is not None and group_by == "key") else group_by
    width = DAY if group_by == "day" else HOUR
    group_col = (r.bucket - r.bucket % width) if time_group else r.value
    totals: dict[Any, list[float]] = {}
    # One query per grain and span: each is a range scan of the primary key (scope, dim, grain,
    # bucket); an OR of them all would scan every grain of the dimension.
    spans = [(g, s) for g, ss in buckets.items() for s in ss]
    async with engine.connect() as conn:
        for grain, span in spans:
            q = (
                sa.select(group_col.label("g"), *(sa.func.sum(r[n]).label(n) for n in MEASURES))
                .where(r.scope == scope, r.dim == dim, r.grain == grain, _span(r.bucket, span))
                .group_by(group_col)
            )
            for row in (await conn.execute(q)).mappings():
                g = key_id if dim == "all" and not time_group else row["g"]
                cur = totals.setdefault(g, [0.0] * len(MEASURES))
                for i, name in enumerate(MEASURES):
                    cur[i] += float(row[name] or 0)
        if raw:  # the ragged seconds, summed by the database: a busy minute holds 100k records
            c = usage_records.c
            group = _raw_group_col(group_by, engine.dialect.name).label("g")
            q = sa.select(group, *_raw_sums()).where(sa.or_(*(_span(c.created_at, s) for s in raw))).group_by(group)
            if key_id is not None:
                q = q.where(c.key_id == key_id)
            for row in (await conn.execute(q)).mappings():
                m = [float(row[n] or 0) for n in MEASURES]
                for g in _raw_groups(group_by, row["g"]):
                    cur = totals.setdefault(g, [0.0] * len(MEASURES))
                    for i, v in enumerate(m):
                        cur[i] += v
    out: list[Row] = []
    for g, m in totals.items():
        s = dict(zip(MEASURES, m, strict=True))
        if s["requests"] <= 0:
            continue
        out.append(
            {
                "group": _label(group_by, g),
                "requests": int(s["requests"]),
                "errors": int(s["errors"]),
                "prompt_tokens": int(s["prompt_tokens"]),
                "completion_tokens": int(s["completion_tokens"]),
                "cached_tokens": int(s["cached_tokens"]),
                "cost_usd": float(s["cost_usd"]),
                "avg_latency_ms": s["latency_ms_sum"] / s["latency_count"] if s["latency_count"] else None,
            }
        )
    out.sort(key=lambda d: (d["group"] is None, d["group"] if d["group"] is not None else 0))
    return out
