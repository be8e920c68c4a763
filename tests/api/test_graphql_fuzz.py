"""Fuzz /admin/graphql from its own schema (hypothesis-graphql), on SQLite and PostgreSQL: no 5xx, ever.

Valid queries (any field, argument and nesting the schema allows), invalid ones (wrong argument types,
nulls where values are required) and arbitrary text go to a real gateway holding keys, teams and
usage records; every answer must be below 500, in GraphQL's shape with a code on each error, and no
error may be an internal one. The example count comes from ``FLUXWAY_FUZZ_EXAMPLES`` (default 25).
"""

from __future__ import annotations

from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, queries

from fluxway.api.graphql.schema import build
from tests.api.test_admin_fuzz import EXAMPLES, MASTER, LiveGateway, live_gateway  # noqa: F401 (the fixture)

SCHEMA = build()
CODES = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_REQUEST", "BAD_USER_INPUT", "QUERY_TOO_LARGE",
         "QUERY_TOO_DEEP", "QUERY_TOO_COSTLY", "OPERATION_NOT_SUPPORTED", "NOT_AVAILABLE"}


def _populate(url: str, http: requests.Session) -> None:
    assert http.post(url + "/admin/teams", json={"name": "t1", "rpm": 5}).status_code == 201
    for i in range(3):
        r = http.post(url + "/admin/keys", json={"name": f"k{i}", "team": "t1" if i else None,
                                                 "budget": {"amount_usd": 1, "period": "daily"}})
        assert r.status_code == 201
        http.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {r.json()['key']}"},
                  json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})  # 502: recorded


def _check(resp: requests.Response, label: str) -> None:
    assert resp.status_code < 500, (label, resp.status_code, resp.text[:500])
    body: dict[str, Any] = resp.json()
    assert "data" in body or body.get("errors"), (label, body)
    for err in body.get("errors", ()):
        assert isinstance(err["message"], str) and err["extensions"]["code"] in CODES, (label, err)
    assert "Traceback" not in resp.text


def test_graphql_fuzz_never_answers_5xx(live_gateway: LiveGateway) -> None:  # noqa: F811
    url = live_gateway.url + "/admin/graphql"
    with requests.Session() as http:
        http.headers["authorization"] = f"Bearer {MASTER}"
        _populate(live_gateway.url, http)
        seen: dict[str, int] = {}

        @settings(max_examples=EXAMPLES * 4, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(query=queries(SCHEMA, mode=Mode.POSITIVE) | queries(SCHEMA, mode=Mode.NEGATIVE)
               | st.text(max_size=200), get=st.booleans())
        def run(query: Any, get: bool) -> None:
            text = query if isinstance(query, str) else str(query)
            resp = (http.get(url, params={"query": text}, timeout=30) if get
                    else http.post(url, json={"query": text}, timeout=30))
            _check(resp, text[:300])
            for err in resp.json().get("errors", ()):
                seen[err["extensions"]["code"]] = seen.get(err["extensions"]["code"], 0) + 1
            if "data" in resp.json() and resp.json()["data"]:
                seen["data"] = seen.get("data", 0) + 1

        run()
    # The fuzzer reached both sides: answers with data, and refusals of several kinds.
    assert seen.get("data", 0) > 0 and len(set(seen) - {"data"}) >= 2, seen
