"""Async engine factory: ``sqlite:///path`` -> aiosqlite (WAL), ``postgresql://`` -> asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a config URL (a driver already named is kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store.url: not a database URL: {url!r}")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}" if "+" not in scheme else url
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}" if "+" not in scheme else url
    raise ValueError(f"store.url: unsupported database {scheme!r} (use sqlite:/// or postgresql://)")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    u = make_url(async_url(url))
    if u.get_backend_name() != "sqlite":
        return None
    db = u.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db)


def create_engine(url: str) -> AsyncEngine:
    aurl = make_url(async_url(url))
    if aurl.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if path is None:
            kwargs["poolclass"] = StaticPool
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(aurl, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if path is not None:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # A bounded connect: a store that is down or unreachable fails fast (the gateway serves on, spooling).
    return create_async_engine(
        aurl, pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=1800, connect_args={"timeout": 5}
    )
