"""Real Redis and PostgreSQL for tests (pytest plugin: ``pytest_plugins = ["tests.support.services"]``).

The servers come from ``FLUXWAY_TEST_REDIS_URL`` / ``FLUXWAY_TEST_POSTGRES_URL`` when set (CI sets them
with ``eval "$(scripts/services.sh)"``), or else this module runs ``scripts/services.sh`` once per session.
When a server cannot be had, tests that need it are skipped with the reason locally, but fail when
``CI=true``: CI never passes by skipping.

Isolation (several developers' sessions may share one server):
- ``redis_url`` (session): a Redis URL whose database number belongs to this session alone.
- ``clean_redis_url`` (function): the same URL, with that database flushed before the test.
- ``postgres_url`` (session): a PostgreSQL database created for this session, dropped at its end; a
  test may create more databases from it (the role may CREATE DATABASE).
- ``clean_postgres_url`` (module): a fresh, empty database for one test module, dropped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"
REDIS_ENV = "FLUXWAY_TEST_REDIS_URL"
POSTGRES_ENV = "FLUXWAY_TEST_POSTGRES_URL"
_SEQ_KEY = "fluxway:test:session-db-seq"

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(what: str, why: str) -> NoReturn:
    """Skip locally, fail in CI."""
    msg = f'{what} is not available: {why} (start it with `eval "$(scripts/services.sh)"`)'
    if in_ci():
        pytest.fail(f"CI=true: {msg}", pytrace=False)
    pytest.skip(msg)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in a thread (safe from sync fixtures)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path.lstrip("/"), parts.query, parts.fragment))


@dataclass
class ServiceURLs:
    """Where the servers are: the environment first, then scripts/services.sh (run at most once)."""

    redis: str | None = None
    postgres: str | None = None
    script_error: str | None = None
    _ran: bool = field(default=False, repr=False)

    def get(self, name: str) -> str:
        env = REDIS_ENV if name == "redis" else POSTGRES_ENV
        url = os.environ.get(env) or getattr(self, name)
        if url:
            return url
        if not self._ran:
            self._run_script()
        url = getattr(self, name)
        if not url:
            unavailable(name, self.script_error or f"{SCRIPT.name} printed no URL")
        return str(url)

    def _run_script(self) -> None:
        self._ran = True
        try:
            proc = subprocess.run(
                ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.script_error = f"{SCRIPT} failed: {exc}"
            return
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            self.script_error = f"{SCRIPT} exited {proc.returncode}: {tail}"
            return
        for line in proc.stdout.splitlines():
            for word in line.removeprefix("export ").split():
                key, _, value = word.partition("=")
                if key == REDIS_ENV:
                    self.redis = value
                elif key == POSTGRES_ENV:
                    self.postgres = value


@pytest.fixture(scope="session")
def service_urls() -> ServiceURLs:
    return ServiceURLs()


# ---------------------------------------------------------------------------------------------
# Redis


@pytest.fixture(scope="session")
def redis_url(service_urls: ServiceURLs) -> str:
    import redis

    base = service_urls.get("redis")
    try:
        client = redis.Redis.from_url(with_path(base, "0"), socket_connect_timeout=3)
        try:
            client.ping()
            try:
                databases = int(client.config_get("databases").get("databases", 16))
            except redis.ResponseError:  # CONFIG disabled: keep the URL's own database
                return base
            seq = int(client.incr(_SEQ_KEY))
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        unavailable("Redis", f"{base}: {exc}")
    if databases < 2:
        return base
    # Database 0 holds the sequence; each session takes the next of the others.
    return with_path(base, str(1 + (seq - 1) % (databases - 1)))


@pytest.fixture
def clean_redis_url(redis_url: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _asyncpg_dsn(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def create_database(base_url: str, prefix: str = "fwt") -> str:
    """CREATE a new empty database next to ``base_url``'s; returns its URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def go() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(go)
    return with_path(base_url, name)


def drop_database(base_url: str, url: str) -> None:
    import asyncpg

    name = urlsplit(url).path.lstrip("/")

    async def go() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_async(go)


@pytest.fixture(scope="session")
def postgres_url(service_urls: ServiceURLs) -> Iterator[str]:
    base = service_urls.get("postgres")
    try:
        url = create_database(base, "fws")
    except Exception as exc:
        unavailable("PostgreSQL", f"{base}: {type(exc).__name__}: {exc}")
    yield url
    with contextlib.suppress(Exception):  # the server may already be gone at the very end of a session
        drop_database(base, url)


@pytest.fixture(scope="module")
def clean_postgres_url(postgres_url: str) -> Iterator[str]:
    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)


__all__ = [
    "ServiceURLs",
    "clean_postgres_url",
    "clean_redis_url",
    "create_database",
    "drop_database",
    "postgres_url",
    "redis_url",
    "service_urls",
]
