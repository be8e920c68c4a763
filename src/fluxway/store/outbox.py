"""The events outbox in the store: events appended once, per-sink delivery rows claimed, delivered,
retried, trimmed and pruned (tables ``event_outbox`` and ``event_deliveries``).

Claims are leases: a dispatcher takes up to a batch of a sink's due rows, marking them with its owner
id and a lease end (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so instances sharing the store claim
different rows; SQLite: one writer at a time anyway). A delivered row is deleted; a failed one gets
its next try time; a crashed instance's claims lapse when their lease ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.tables import event_deliveries as D
from fluxway.store.tables import event_outbox as O

NewEvent = tuple[str, str, float, str, Sequence[str]]  # id, type, created_at, JSON body, sinks


@dataclass(frozen=True, slots=True)
class Claimed:
    seq: int
    id: str
    type: str
    body: str
    attempts: int
    created_at: float


class OutboxStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        ins: Any = postgresql.insert(O) if self._pg else sqlite.insert(O)
        # An event id already stored (a replayed usage record, a budget threshold another instance
        # crossed first) is skipped: the event is delivered once per sink, not once per producer.
        self._insert = ins.on_conflict_do_nothing(index_elements=["id"]).returning(O.c.seq, O.c.id)

    async def append(self, events: Sequence[NewEvent]) -> dict[str, int]:
        """Store events and their delivery rows in one transaction; returns new rows per sink."""
        if not events:
            return {}
        by_id = {e[0]: e for e in events}
        rows = [{"id": e[0], "type": e[1], "created_at": e[2], "body": e[3]} for e in by_id.values()]
        added: dict[str, int] = {}
        async with self._engine.begin() as conn:
            result = await conn.execute(self._insert, rows)
            deliveries = []
            for seq, eid in result.all():
                ev = by_id[eid]
                for sink in ev[4]:
                    deliveries.append({"sink": sink, "seq": seq, "created_at": ev[2], "attempts": 0,
                                       "next_at": 0.0, "lease_until": None, "owner": None})
                    added[sink] = added.get(sink, 0) + 1
            if deliveries:
                await conn.execute(D.insert(), deliveries)
        return added

    async def claim(
        self, sink: str, owner: str, now: float, lease_s: float, limit: int
    ) -> tuple[list[Claimed], float | None]:
        """Up to ``limit`` of the sink's unclaimed rows, oldest first, leased to ``owner`` until
        now + lease_s, stopping before the first row not due yet (a failed event waiting for its
        retry holds back the ones after it: order is kept). Returns (rows, when the first row that
        was held back is due)."""
        free = sa.or_(D.c.lease_until.is_(None), D.c.lease_until < now)
        async with self._engine.begin() as conn:
            q = (sa.select(D.c.seq, D.c.next_at).where(D.c.sink == sink, free)
                 .order_by(D.c.seq).limit(limit))
            if self._pg:
                q = q.with_for_update(skip_locked=True)
            seqs: list[int] = []
            due_at: float | None = None
            for seq, next_at in await conn.execute(q):
                if next_at > now:
                    due_at = float(next_at)
                    break
                seqs.append(int(seq))
            if not seqs:
                return [], due_at
            until = now + lease_s
            await conn.execute(
                sa.update(D).where(D.c.sink == sink, D.c.seq.in_(seqs), free).values(lease_until=until, owner=owner)
            )
            got = await conn.execute(
                sa.select(D.c.seq, O.c.id, O.c.type, O.c.body, D.c.attempts, D.c.created_at)
                .join(O, O.c.seq == D.c.seq)
                .where(D.c.sink == sink, D.c.seq.in_(seqs), D.c.owner == owner, D.c.lease_until == until)
                .order_by(D.c.seq)
            )
            return [Claimed(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5])) for r in got], due_at

    async def delivered(self, sink: str, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        if seqs:
            async with self._engine.begin() as conn:
                await conn.execute(sa.delete(D).where(D.c.sink == sink, D.c.seq.in_(seqs)))

    async def failed(self, sink: str, seq: int, next_at: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(D).where(D.c.sink == sink, D.c.seq == seq)
                .values(attempts=D.c.attempts + 1, next_at=next_at, lease_until=None, owner=None)
            )

    async def release(self, sink: str, seqs: Iterable[int], owner: str) -> None:
        seqs = list(seqs)
        if seqs:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.update(D).where(D.c.sink == sink, D.c.seq.in_(seqs), D.c.owner == owner)
                    .values(lease_until=None, owner=None)
                )

    async def release_owner(self, owner: str) -> None:
        """Give up every claim of ``owner`` (an instance shutting down): others may take them at once."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(D).where(D.c.owner == owner).values(lease_until=None, owner=None))

    async def backlog(self, sink: str) -> tuple[int, float | None]:
        """Rows waiting for the sink, and the creation time of the oldest."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(sa.func.count(), sa.func.min(D.c.created_at)).where(D.c.sink == sink)
            )).one()
        return int(row[0]), (None if row[1] is None else float(row[1]))

    async def trim(self, sink: str, keep: int, waiting: int) -> int:
        """Drop the sink's oldest rows so that at most ``keep`` wait; returns how many were dropped."""
        excess = waiting - keep
        if excess <= 0:
            return 0
        async with self._engine.begin() as conn:
            edge = (await conn.execute(
                sa.select(D.c.seq).where(D.c.sink == sink).order_by(D.c.seq).offset(excess - 1).limit(1)
            )).scalar()
            if edge is None:
                return 0
            res = await conn.execute(sa.delete(D).where(D.c.sink == sink, D.c.seq <= edge))
            return int(res.rowcount or 0)

    async def prune(self, before: float, sinks: Sequence[str], limit: int = 1000) -> int:
        """Delete events older than ``before`` that no sink still waits for (and, that old, the rows
        of sinks no longer configured); returns the events deleted."""
        async with self._engine.begin() as conn:
            if sinks:
                await conn.execute(sa.delete(D).where(D.c.sink.not_in(list(sinks)), D.c.created_at < before))
            waiting = sa.select(D.c.seq).where(D.c.seq == O.c.seq).exists()
            old = sa.select(O.c.seq).where(O.c.created_at < before, ~waiting).order_by(O.c.seq).limit(limit)
            res = await conn.execute(sa.delete(O).where(O.c.seq.in_(old.scalar_subquery())))
            return int(res.rowcount or 0)
