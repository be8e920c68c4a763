"""Importing the serving app stays cheap: the store, Redis, the upstream HTTP client, YAML, the admin
API and the tokenizer vocabularies load when the Runtime starts (or a command needs them), not at
``import fluxway.app``. Asserted on the modules ``python -X importtime`` reports, never on a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fluxway

# Packages (and fluxway modules) whose import is the cost: none may be loaded by the statement.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "redis",
    "aiohttp",
    "yarl",
    "yaml",
    "fastapi",
    "starlette",
    "quicktok",  # the tokenizer vocabularies
    "fluxway.policy.governance",
    "fluxway.policy.accounts",  # the admin API's account models
    "fluxway.api.admin",
    "fluxway.store",
    "fluxway.redis_client",
    "graphql",  # graphql-core: only /admin/graphql needs it
    "fluxway.api.graphql",
    "nats",  # the NATS event sink's client
    "fluxway.events.outbox",  # the event outbox and its sinks: loaded when `events` names a sink
    "fluxway.events.sinks",
    "mcp",  # the MCP SDK (and what it brings): loaded when `mcp.servers` is configured or /mcp is called
    "mcp_types",
    "httpx2",
    "fluxway.mcp.upstream",
    "fluxway.mcp.service",
    "fluxway.mcp.gateway",
)


def imported_modules(statement: str) -> set[str]:
    """Every module ``statement`` imports in a fresh interpreter (this checkout's fluxway first)."""
    src = str(Path(fluxway.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_the_serving_app_imports_no_heavy_module() -> None:
    modules = imported_modules("import fluxway.app")
    # The report was read: what the app does need is in it.
    assert {"fluxway.app", "fluxway.runtime", "fluxway.routing.executor", "fluxway.transport", "pydantic"} <= modules
    assert heavy_in(modules) == []


@pytest.mark.parametrize("statement", [
    "from fluxway.cli import build_parser; build_parser()",  # `fluxway serve` before its config is read
    "from fluxway.app import create_app",
])
def test_the_command_line_imports_no_heavy_module(statement: str) -> None:
    modules = imported_modules(statement)
    assert "fluxway.config" in modules
    assert heavy_in(modules) == []


def test_the_admin_api_loads_graphql_only_for_its_first_graphql_request() -> None:
    modules = imported_modules("import fluxway.api.admin")
    assert {"fastapi", "fluxway.api.admin", "fluxway.api.admin_queries"} <= modules
    assert not any(m == "graphql" or m.startswith(("graphql.", "fluxway.api.graphql")) for m in modules)
    # What the first request to /admin/graphql imports does load it (so the check above can fail).
    assert {"graphql", "fluxway.api.graphql.schema"} <= imported_modules("import fluxway.api.graphql.endpoint")


def test_the_check_catches_a_heavy_import() -> None:
    """The same check fails when a heavy module is imported (so the tests above can fail)."""
    modules = imported_modules("import fluxway.app, fluxway.policy.governance")
    assert {"sqlalchemy", "redis", "fluxway.store", "fluxway.policy.governance"} <= set(heavy_in(modules))


def test_the_mcp_sdk_loads_with_the_mcp_service_only() -> None:
    """The config's `mcp` section costs no SDK; the service (servers configured, or /mcp called) loads it."""
    assert heavy_in(imported_modules("import fluxway.config, fluxway.mcp.registry")) == []
    assert {"mcp", "mcp_types", "fluxway.mcp.upstream"} <= imported_modules("import fluxway.mcp.service")
