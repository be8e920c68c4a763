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
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

_PG_LOCK_ID = 0x46_4C_55_58  # "FLUX"
# The newest migration shipped (a test checks it against the scripts): a database already there
# starts without importing Alembic at all.
HEAD = "0010_mcp_tools"


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "fluxway.store:migrations")
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(conn: Connection, revision: str) -> None:
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def _current_sync(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


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
    if revision in ("head", HEAD):
        try:
            if await current(engine) == HEAD:
                return HEAD
        except Exception:  # not readable yet (a first start racing another): migrate under the lock
            pass
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
