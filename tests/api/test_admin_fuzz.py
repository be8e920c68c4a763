"""Fuzz the admin API from its own OpenAPI (schemathesis), on SQLite and PostgreSQL: no 5xx, ever.

Positive cases (valid by the schema) and negative ones (violating it) for every operation go to a
real gateway over HTTP with the master key; every answer must be below 500, in the OpenAI error
shape when it is an error, and no connection may be dropped. Issue 9 "Also found": rpm/tpm above
2^63 gave 500s on SQLite, int32 overflow and NUL bytes gave 503 "store unavailable" on PostgreSQL.

The example count per operation and mode comes from ``FLUXWAY_FUZZ_EXAMPLES`` (default 25, for CI);
``scripts/fuzz.sh`` runs a longer campaign. schemathesis's pytest plugin is not used (it does not
support pytest 9): its strategies are driven by hypothesis ``@given`` here.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.store import dbs
from tests.support.gateway import run_gateway

MASTER = "sk-master-fuzz"
EXAMPLES = int(os.environ.get("FLUXWAY_FUZZ_EXAMPLES", "25"))


@dataclass
class Tally:
    cases: int = 0
    server_errors: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class LiveGateway:
    url: str
    stop: threading.Event


@pytest.fixture(params=["sqlite", "postgresql"])
def live_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveGateway]:
    """A gateway on its own event loop in a thread, so hypothesis can drive it synchronously."""
    url = f"sqlite:///{tmp_path}/fluxway.db"
    base = None
    if request.param == "postgresql":
        base = request.getfixturevalue("postgres_url")
        url = asyncio.run(dbs.fresh_postgres_db(base))
    cfg = {
        "auth": {"master_key": MASTER},
        "store": {"url": url},
        "usage": {"spool_dir": str(tmp_path / "spool")},
        "providers": [{"name": "up", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }
    ready: dict[str, Any] = {}
    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        try:
            async with run_gateway(cfg) as gw:
                ready["url"] = gw.url
                started.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        except BaseException as exc:
            ready["error"] = exc
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    started.wait(30)
    try:
        if "error" in ready:
            raise ready["error"]
        yield LiveGateway(ready["url"], stop)
    finally:
        stop.set()
        thread.join(30)
        if base is not None:
            asyncio.run(dbs.drop_postgres_db(base, url))


def _schema(url: str) -> Any:
    spec = requests.get(url + "/openapi.json", headers={"authorization": f"Bearer {MASTER}"}, timeout=10).json()
    return schemathesis.openapi.from_dict(spec)


def _fuzz_operation(op: Any, mode: GenerationMode, url: str, tally: Tally, http: requests.Session) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(op.as_strategy(generation_mode=mode))
        kwargs = case.as_transport_kwargs(base_url=url)
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "authorization": f"Bearer {MASTER}"}
        kwargs["timeout"] = 30
        label = f"{mode.value} {case.method} {case.formatted_path} query={case.query!r} body={case.body!r}"[:600]
        tally.cases += 1
        try:
            resp = http.request(**kwargs)
        except requests.ConnectionError as exc:
            tally.dropped.append(f"{label}: {exc}")
            return
        tally.statuses[resp.status_code] = tally.statuses.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            tally.server_errors.append(f"{resp.status_code} {label}: {resp.text[:300]}")
        elif resp.status_code >= 400:
            body = resp.json()  # an error in the OpenAI shape, never plain text
            assert isinstance(body.get("error", {}).get("message"), str), (label, resp.text[:300])

    try:
        run()
    except Unsatisfiable:  # nothing to break in this operation (no parameters, no body)
        if mode is GenerationMode.POSITIVE:
            raise


def fuzz(url: str) -> Tally:
    tally = Tally()
    schema = _schema(url)
    with requests.Session() as http:
        for result in schema.get_all_operations():
            op = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_operation(op, mode, url, tally, http)
    return tally


def test_admin_api_fuzz_never_answers_5xx(live_gateway: LiveGateway) -> None:
    tally = fuzz(live_gateway.url)
    print(f"\nadmin fuzz: {tally.cases} cases, statuses {dict(sorted(tally.statuses.items()))}, "
          f"{len(tally.server_errors)} 5xx, {len(tally.dropped)} dropped")
    assert tally.cases > 0
    assert not tally.server_errors, "\n".join(tally.server_errors[:20])
    assert not tally.dropped, "\n".join(tally.dropped[:20])
