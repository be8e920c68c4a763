"""Usage records in the store: idempotent batch inserts, spend sums, aggregates and log pages."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxway.store import rollups, usage_report
from fluxway.store.sanitize import sanitize_record
from fluxway.store.tables import BODY_COLUMNS, USAGE_COLUMNS, usage_records, usage_rollups

log = logging.getLogger("fluxway.usage")

Row = dict[str, Any]
Reject = Callable[[Mapping[str, Any], str], None]


def is_bad_data(exc: BaseException) -> bool:
    """True when the database refused the values themselves (SQLSTATE class 22 or 23, or a bind
    value the driver could not convert), not for a connection, schema or server fault."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and state:
            return state[:2] in ("22", "23")
        if isinstance(e, OSError | TimeoutError):
            return False
        if isinstance(e, sqlite3.IntegrityError | sqlite3.DataError | ValueError | TypeError | OverflowError):
            return True
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return False


class BadCursor(ValueError):
    pass


def encode_cursor(created_at: float, record_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, record_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, rid = orjson.loads(raw)
        if not isinstance(at, int | float) or not isinstance(rid, str) or not math.isfinite(at):
            raise TypeError
        if len(rid) > 32 or not rid.isprintable():
            raise ValueError
        return float(at), rid
    except Exception:
        raise BadCursor("invalid cursor") from None


_SANITIZE_SLICE_S = 0.001  # sanitising runs this long at most before letting calls run
# Rows per SQLite statement (its parameters under SQLite's limit: 32766 since 3.32, 999 before):
# a batch is written as statements of these sizes, largest first.
_SQLITE_MAX_ROWS = (32766 if sqlite3.sqlite_version_info >= (3, 32) else 999) // len(USAGE_COLUMNS)
_SQLITE_SIZES: tuple[int, ...] = tuple(n for n in (1024, 256, 64, 16, 4, 1) if n <= _SQLITE_MAX_ROWS)
PROVISIONAL_STATUS = 0  # a stream's record while it is open; replaced by its final record


def _final_per_id(pairs: list[tuple[Row, Mapping[str, Any]]]) -> list[tuple[Row, Mapping[str, Any]]]:
    """One row per id (an upsert may not touch a row twice in one statement): a final record wins
    over a provisional one, else the later one. Pairs are (sanitised row, original record)."""
    by_id: dict[Any, tuple[Row, Mapping[str, Any]]] = {}
    for pair in pairs:
        r = pair[0]
        seen = by_id.get(r["id"])
        if seen is None or r["status"] != PROVISIONAL_STATUS or seen[0]["status"] == PROVISIONAL_STATUS:
            by_id[r["id"]] = pair
    return list(by_id.values())


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).splitlines()
    return (f"{type(orig if orig is not None else exc).__name__}: " + (text[0] if text else ""))[:500]


class UsageStore:
    def __init__(self, engine: AsyncEngine, minute_rollups_s: float | None = None) -> None:
        self._engine = engine
        # Minute rollups older than this are pruned, and read back from the records (None: kept).
        self.minute_rollups_s = minute_rollups_s
        dialect = engine.dialect.name
        if dialect == "postgresql":
            ins: Any = postgresql.insert(usage_records)
        elif dialect == "sqlite":
            ins = sqlite.insert(usage_records)
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise ValueError(f"unsupported database {dialect}")
        # A record id already stored is skipped (replays are harmless), unless the stored row is a
        # provisional one (a stream's record written when it opened): the final record replaces it.
        self._insert = ins.on_conflict_do_update(
            index_elements=["id"],
            set_={c: ins.excluded[c] for c in USAGE_COLUMNS if c != "id"},
            where=usage_records.c.status == PROVISIONAL_STATUS,
        )
        c = usage_records.c
        self._existing = sa.select(c.id, *(c[f] for f in rollups.RECORD_FIELDS))
        self._multi_rows: dict[int, str] = {}  # SQLite: rows per statement (_SQLITE_SIZES) -> its SQL

    def _sqlite_sql(self, n: int) -> str:
        """The SQLite upsert of ``n`` rows in one statement (what ``self._insert`` does for one)."""
        sql = self._multi_rows.get(n)
        if sql is None:
            cols = ", ".join(USAGE_COLUMNS)
            row = "(" + ", ".join("?" * len(USAGE_COLUMNS)) + ")"
            updates = ", ".join(f"{c} = excluded.{c}" for c in USAGE_COLUMNS if c != "id")
            sql = (
                f"INSERT INTO usage_records ({cols}) VALUES {', '.join([row] * n)} "
                f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE usage_records.status = {PROVISIONAL_STATUS}"
            )
            self._multi_rows[n] = sql
        return sql

    async def _insert_rows(self, conn: AsyncConnection, chunk: list[Row]) -> None:
        if conn.dialect.name != "sqlite":
            await conn.execute(self._insert, chunk)
            return
        # A few statements of many rows each: executemany steps the statement once per row, and
        # each step releases the GIL and waits to take it back from a busy event loop (the driver
        # runs in a thread), which made a flush under load ~4x slower than serving. Statement
        # sizes come from a fixed set, so the driver's statement cache holds a handful of shapes.
        i = 0
        for size in _SQLITE_SIZES:
            while len(chunk) - i >= size:
                part = chunk[i : i + size]
                params = tuple(v for row in part for v in (row.get(c) for c in USAGE_COLUMNS))
                await conn.exec_driver_sql(self._sqlite_sql(size), params)
                i += size

    async def _write(self, chunk: list[Row]) -> None:
        """Insert ``chunk`` and add it to the rollups, in one transaction: a record skipped (already
        stored) adds nothing; a provisional record it replaces is taken back out first."""
        async with self._engine.begin() as conn:
            ids = [r["id"] for r in chunk]
            q = self._existing.where(usage_records.c.id.in_(ids))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            before = {r["id"]: dict(r) for r in (await conn.execute(q)).mappings()}
            await self._insert_rows(conn, chunk)
            acc = rollups.deltas((r for r in before.values() if r["status"] == PROVISIONAL_STATUS), sign=-1)
            written = (r for r in chunk if r["id"] not in before or before[r["id"]]["status"] == PROVISIONAL_STATUS)
            rollups.deltas(written, acc=acc)
            await rollups.upsert(conn, acc)

    async def insert(
        self, records: Sequence[Mapping[str, Any]], batch_size: int = 500, on_reject: Reject | None = None
    ) -> int:
        """Insert records; a record id already stored is skipped (replays are harmless), except that a
        final record replaces its provisional one (``status`` :data:`PROVISIONAL_STATUS`).

        Every record is sanitised first (:mod:`fluxway.store.sanitize`). Should the database still
        refuse a batch for its values, the batch is retried record by record and each record it
        refuses goes to ``on_reject`` (with the reason) instead of blocking the others; a connection
        or server fault is raised, so the caller keeps the records and retries later. Returns the
        number of records rejected.
        """
        if not records:
            return 0
        pairs: list[tuple[Row, Mapping[str, Any]]] = []
        clock = time.perf_counter
        until = clock() + _SANITIZE_SLICE_S
        for r in records:  # a few µs each: let calls run in between
            pairs.append((sanitize_record(r), r))
            if clock() >= until:
                await asyncio.sleep(0)
                until = clock() + _SANITIZE_SLICE_S
        if len({row["id"] for row, _ in pairs}) != len(pairs):
            pairs = _final_per_id(pairs)
        rejected = 0
        for i in range(0, len(pairs), batch_size):
            part = pairs[i : i + batch_size]
            chunk = [row for row, _ in part]
            try:
                await self._write(chunk)
                continue
            except Exception as exc:
                if not is_bad_data(exc):
                    raise
                log.warning("usage batch of %d refused (%s): storing its records one by one", len(chunk), _reason(exc))
            for row, original in part:
                try:
                    await self._write([row])
                except Exception as exc:
                    if not is_bad_data(exc):
                        raise
                    rejected += 1
                    log.error("usage record %s refused by the store, quarantined: %s", row.get("id"), _reason(exc))
                    if on_reject is not None:
                        on_reject(original, _reason(exc))
        return rejected

    async def count(self, **where: Any) -> int:
        q = sa.select(sa.func.count()).select_from(usage_records)
        for col, value in where.items():
            q = q.where(usage_records.c[col] == value)
        async with self._engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def ids(self) -> list[tuple[str, str]]:
        """(record id, request id) of every record."""
        async with self._engine.connect() as conn:
            q = sa.select(usage_records.c.id, usage_records.c.request_id)
            return [(r[0], r[1]) for r in await conn.execute(q)]

    async def delete_before(self, cutoff: float, limit: int = 500) -> int:
        """Delete at most ``limit`` of the oldest records created before ``cutoff`` (one short
        transaction, on the time index); returns how many went."""
        c = usage_records.c
        oldest = sa.select(c.id).where(c.created_at < cutoff).order_by(c.created_at).limit(limit)
        q = sa.delete(usage_records).where(c.id.in_(oldest.scalar_subquery()))
        async with self._engine.begin() as conn:
            return int((await conn.execute(q)).rowcount or 0)

    async def spend(self, *, key_id: str | None = None, team: str | None = None, since: float | None = None) -> float:
        """Total cost of the records of a key or a team since a time."""
        q = sa.select(sa.func.coalesce(sa.func.sum(usage_records.c.cost_usd), 0.0))
        if key_id is not None:
            q = q.where(usage_records.c.key_id == key_id)
        if team is not None:
            q = q.where(usage_records.c.team == team)
        if since is not None:
            q = q.where(usage_records.c.created_at >= since)
        async with self._engine.connect() as conn:
            return float((await conn.execute(q)).scalar_one())

    async def aggregate(
        self, group_by: str, since: float | None = None, until: float | None = None, key_id: str | None = None
    ) -> list[Row]:
        """Totals per group (:data:`fluxway.store.usage_report.GROUPS`), answered from the rollups."""
        horizon = time.time() - self.minute_rollups_s if self.minute_rollups_s is not None else None
        return await usage_report.aggregate(self._engine, group_by, since, until, key_id, horizon)

    async def prune_minute_rollups(self, before: float, limit: int = 5000) -> int:
        """Delete at most ``limit`` minute rollup rows of buckets before ``before`` (one short
        transaction, on the (grain, bucket) index); returns how many went."""
        r = usage_rollups.c
        pk = sa.tuple_(r.scope, r.dim, r.grain, r.bucket, r.value)
        old = (
            sa.select(r.scope, r.dim, r.grain, r.bucket, r.value)
            .where(r.grain == rollups.MINUTE, r.bucket < before)
            .limit(limit)
        )
        async with self._engine.begin() as conn:
            return int((await conn.execute(sa.delete(usage_rollups).where(pk.in_(old)))).rowcount or 0)

    async def logs(
        self,
        *,
        key_id: str | None = None,
        model: str | None = None,
        status: int | Literal["success", "error"] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        bodies: bool = False,
    ) -> tuple[list[Row], str | None]:
        """Newest first; returns one page and the cursor of the next page (None at the end). The
        captured bodies are read only with ``bodies`` (they may be large)."""
        c = usage_records.c
        cols = [col for col in usage_records.columns if bodies or col.name not in BODY_COLUMNS]
        q = sa.select(*cols).order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
        if key_id is not None:
            q = q.where(c.key_id == key_id)
        if model is not None:
            q = q.where(c.model == model)
        if status == "success":
            q = q.where(c.status < 400)
        elif status == "error":
            q = q.where(c.status >= 400)
        elif status is not None:
            q = q.where(c.status == status)
        if since is not None:
            q = q.where(c.created_at >= since)
        if until is not None:
            q = q.where(c.created_at < until)
        if cursor is not None:
            at, rid = decode_cursor(cursor)
            q = q.where(sa.or_(c.created_at < at, sa.and_(c.created_at == at, c.id < rid)))
        async with self._engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(q)).mappings()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
        return rows, nxt
