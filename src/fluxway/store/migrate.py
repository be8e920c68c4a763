"""Run the shipped Alembic migrations programmatically (at start and by ``fluxway db upgrade``).

Several processes may start at once (``--workers N``): PostgreSQL serialises them with an advisory
lock, SQLite with a lock file beside the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

_PG_LOCK_ID = 0x46_4C_55_58  # "FLUX"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "fluxway.store:migrations")
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(conn: Connection, revision: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def _current_sync(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".migrate.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def upgrade(engine: AsyncEngine, sqlite_file: Path | None = None, revision: str = "head") -> str | None:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    lock = await asyncio.to_thread(_acquire, sqlite_file)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_sync, revision)
        async with engine.connect() as conn:
            return await conn.run_sync(_current_sync)
    finally:
        lock.close()


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_sync)


class _Held:
    def __init__(self, cm: contextlib.AbstractContextManager[None]) -> None:
        self._cm = cm

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def _acquire(path: Path | None) -> _Held:
    cm = _file_lock(path)
    cm.__enter__()
    return _Held(cm)
