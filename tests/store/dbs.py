"""Database fixtures for governance tests: ``db_url`` runs a test on SQLite and on PostgreSQL.

Each PostgreSQL test gets a fresh database (created from the service's URL, dropped afterwards), so
tests never see each other's rows. ``postgres_url`` comes from the
shared services plugin (tests/support/services.py); bind ``db_url = dbs.db_url`` in a test module.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def fresh_postgres_db(base_url: str) -> str:
    name = f"fw_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_dsn(base_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_db(base_url: str, url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(_dsn(base_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fluxway.db"
        return
    base = request.getfixturevalue("postgres_url")
    url = await fresh_postgres_db(base)
    try:
        yield url
    finally:
        await drop_postgres_db(base, url)
