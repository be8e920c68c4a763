"""Stored Responses API answers (table ``responses``), each readable only by the key that made it.

A read names its key: another key's response and an expired one are simply not found (the API
answers 404, never 403, so ids cannot be probed). Expired rows are purged at most once an hour,
by the write that finds the purge due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.tables import responses

_PURGE_EVERY_S = 3600.0
_ID_MAX = 64


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    key_id: str
    created_at: float
    model: str
    previous_response_id: str | None
    context: list[Any]  # the conversation before this turn (items)
    input: list[Any]  # this turn's input items
    response: dict[str, Any]  # the Response object as sent

    @property
    def history(self) -> list[Any]:
        """The items a follow-up continues from: everything before, this input, this output."""
        output = self.response.get("output")
        return [*self.context, *self.input, *(output if isinstance(output, list) else ())]


class ResponseStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._purge_due = 0.0

    async def put(self, record: StoredResponse, retention_s: float) -> None:
        now = self._clock()
        previous = record.previous_response_id[:_ID_MAX] if record.previous_response_id else None
        async with self._engine.begin() as conn:
            await conn.execute(
                responses.insert().values(
                    id=record.id[:_ID_MAX],
                    key_id=record.key_id[:_ID_MAX],
                    created_at=record.created_at,
                    expires_at=record.created_at + retention_s,
                    model=record.model[:256],
                    previous_response_id=previous,
                    context=record.context,
                    input=record.input,
                    response=record.response,
                )
            )
            if now >= self._purge_due:
                self._purge_due = now + _PURGE_EVERY_S
                await conn.execute(responses.delete().where(responses.c.expires_at < now))

    async def get(self, response_id: str, key_id: str) -> StoredResponse | None:
        if len(response_id) > _ID_MAX:
            return None
        c = responses.c
        q = sa.select(responses).where(c.id == response_id, c.key_id == key_id, c.expires_at >= self._clock())
        async with self._engine.connect() as conn:
            r = (await conn.execute(q)).mappings().first()
        if r is None:
            return None
        return StoredResponse(
            id=r["id"], key_id=r["key_id"], created_at=r["created_at"], model=r["model"],
            previous_response_id=r["previous_response_id"], context=list(r["context"] or ()),
            input=list(r["input"] or ()), response=dict(r["response"] or {}),
        )

    async def delete(self, response_id: str, key_id: str) -> bool:
        if len(response_id) > _ID_MAX:
            return False
        c = responses.c
        async with self._engine.begin() as conn:
            res = await conn.execute(
                responses.delete().where(c.id == response_id, c.key_id == key_id, c.expires_at >= self._clock())
            )
        return bool(res.rowcount)
