"""Keys and teams in the store (rows are plain dicts of column values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.tables import teams, virtual_keys

Row = dict[str, Any]


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # keys ------------------------------------------------------------------------------------

    async def insert_key(self, row: Mapping[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(virtual_keys.insert().values(**row))

    async def get_key(self, key_id: str) -> Row | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(virtual_keys).where(virtual_keys.c.id == key_id))).mappings().first()
        return dict(r) if r else None

    async def list_keys(self, *, team: str | None = None, include_revoked: bool = True) -> list[Row]:
        q = sa.select(virtual_keys).order_by(virtual_keys.c.created_at, virtual_keys.c.id)
        if team is not None:
            q = q.where(virtual_keys.c.team == team)
        if not include_revoked:
            q = q.where(virtual_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings()]

    async def active_keys(self) -> list[Row]:
        return await self.list_keys(include_revoked=False)

    async def update_key(self, key_id: str, values: Mapping[str, Any]) -> Row | None:
        async with self._engine.begin() as conn:
            res = await conn.execute(virtual_keys.update().where(virtual_keys.c.id == key_id).values(**values))
            if res.rowcount == 0:
                return None
            r = (await conn.execute(sa.select(virtual_keys).where(virtual_keys.c.id == key_id))).mappings().first()
        return dict(r) if r else None

    async def count_active_keys_of_team(self, team: str) -> int:
        q = (
            sa.select(sa.func.count())
            .select_from(virtual_keys)
            .where(virtual_keys.c.team == team, virtual_keys.c.revoked_at.is_(None))
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    # teams -----------------------------------------------------------------------------------

    async def insert_team(self, row: Mapping[str, Any]) -> bool:
        """False when a team of that name exists."""
        async with self._engine.begin() as conn:
            exists = (await conn.execute(sa.select(teams.c.id).where(teams.c.id == row["id"]))).first()
            if exists:
                return False
            await conn.execute(teams.insert().values(**row))
        return True

    async def get_team(self, team_id: str) -> Row | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).mappings().first()
        return dict(r) if r else None

    async def list_teams(self) -> list[Row]:
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(sa.select(teams).order_by(teams.c.id))).mappings()]

    async def update_team(self, team_id: str, values: Mapping[str, Any]) -> Row | None:
        async with self._engine.begin() as conn:
            res = await conn.execute(teams.update().where(teams.c.id == team_id).values(**values))
            if res.rowcount == 0:
                return None
            r = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).mappings().first()
        return dict(r) if r else None

    async def delete_team(self, team_id: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(teams.delete().where(teams.c.id == team_id))
        return bool(res.rowcount)
