"""The store: SQLAlchemy Core (async) over SQLite (default) or PostgreSQL, migrated by Alembic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxway.store.engine import create_engine, sqlite_path
from fluxway.store.keys import KeyStore
from fluxway.store.objects import ObjectStore
from fluxway.store.outbox import OutboxStore
from fluxway.store.responses import ResponseStore
from fluxway.store.usage import UsageStore


@dataclass
class Store:
    url: str
    engine: AsyncEngine
    keys: KeyStore
    usage: UsageStore
    sqlite_file: Path | None
    objects: ObjectStore
    outbox: OutboxStore
    responses: ResponseStore

    @classmethod
    def open(cls, url: str) -> Store:
        engine = create_engine(url)
        return cls(url, engine, KeyStore(engine), UsageStore(engine), sqlite_path(url), ObjectStore(engine),
                   OutboxStore(engine), ResponseStore(engine))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def upgrade(self, revision: str = "head") -> str | None:
        from fluxway.store.migrate import upgrade

        return await upgrade(self.engine, self.sqlite_file, revision)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


__all__ = ["KeyStore", "ObjectStore", "OutboxStore", "ResponseStore", "Store", "UsageStore"]
