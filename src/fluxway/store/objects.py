"""Who owns each file and batch created through the pass-through surface, and on which provider.

One row per upstream object: the owning key (a key never sees another's objects: a lookup for
another key's id finds nothing), its provider, the object as last seen (what ``GET /v1/files`` and
``GET /v1/batches`` list), and for a batch whether its usage has been recorded (once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.tables import surface_objects as t

MAX_LIST = 100  # objects per listed page at most (OpenAI's own limit for batches)


@dataclass(frozen=True, slots=True)
class OwnedObject:
    id: str
    kind: str
    key_id: str
    provider: str
    created_at: float
    object: dict[str, Any] | None
    meta: dict[str, Any] | None
    usage_recorded: bool


def _row(r: Any) -> OwnedObject:
    obj = r["object"]
    meta = r["meta"]
    return OwnedObject(r["id"], r["kind"], r["key_id"], r["provider"], float(r["created_at"]),
                       obj if isinstance(obj, dict) else None, meta if isinstance(meta, dict) else None,
                       r["usage_recorded_at"] is not None)


class ObjectStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, kind: str, id_: str, key_id: str, provider: str, obj: dict[str, Any],
                  now: float, meta: dict[str, Any] | None = None) -> bool:
        """Record a new object (False if the id is already another key's: it is left alone)."""
        row = {"id": id_[:256], "kind": kind, "key_id": key_id, "provider": provider, "created_at": now,
               "object": obj, "meta": meta}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(t.insert().values(**row))
            return True
        except IntegrityError:
            async with self._engine.begin() as conn:
                res = await conn.execute(t.update().where(t.c.id == row["id"], t.c.key_id == key_id)
                                         .values(object=obj, provider=provider))
            return bool(res.rowcount)

    async def get(self, id_: str, key_id: str, kind: str) -> OwnedObject | None:
        """The object, if ``key_id`` owns it."""
        q = sa.select(t).where(t.c.id == id_, t.c.key_id == key_id, t.c.kind == kind)
        async with self._engine.connect() as conn:
            r = (await conn.execute(q)).mappings().first()
        return _row(r) if r else None

    async def update(self, id_: str, obj: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(t.update().where(t.c.id == id_).values(object=obj))

    async def delete(self, id_: str, key_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.id == id_, t.c.key_id == key_id))

    async def claim_usage(self, id_: str, now: float) -> bool:
        """Mark a batch's usage as recorded; True only for the one caller that did it first."""
        async with self._engine.begin() as conn:
            res = await conn.execute(
                t.update().where(t.c.id == id_, t.c.usage_recorded_at.is_(None)).values(usage_recorded_at=now)
            )
        return bool(res.rowcount)

    async def unclaim_usage(self, id_: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(t.update().where(t.c.id == id_).values(usage_recorded_at=None))

    async def page(self, kind: str, key_id: str, limit: int, after: str | None = None,
                   purpose: str | None = None, ascending: bool = False) -> tuple[list[OwnedObject], bool]:
        """One page of the key's objects, newest first (``ascending``: oldest first), after the
        object ``after``; and whether more follow."""
        limit = max(1, min(limit, MAX_LIST))
        q = sa.select(t).where(t.c.key_id == key_id, t.c.kind == kind)
        async with self._engine.connect() as conn:
            if after:
                anchor = (await conn.execute(sa.select(t.c.created_at).where(
                    t.c.id == after, t.c.key_id == key_id, t.c.kind == kind))).first()
                if anchor is not None:
                    c = anchor[0]
                    if ascending:
                        q = q.where(sa.or_(t.c.created_at > c, sa.and_(t.c.created_at == c, t.c.id > after)))
                    else:
                        q = q.where(sa.or_(t.c.created_at < c, sa.and_(t.c.created_at == c, t.c.id < after)))
            order = (t.c.created_at, t.c.id) if ascending else (t.c.created_at.desc(), t.c.id.desc())
            q = q.order_by(*order)
            rows = [_row(r) for r in (await conn.execute(q.limit(limit + 1 if purpose is None else 10_000)))
                    .mappings()]
        if purpose is not None:
            rows = [r for r in rows if (r.object or {}).get("purpose") == purpose]
        return rows[:limit], len(rows) > limit
