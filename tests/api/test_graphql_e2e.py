"""End to end: /admin/graphql answers what the REST admin API answers, and refuses bad input clearly.

Keys and teams are made through REST, calls go through the gateway to a fake upstream, then every
GraphQL query is compared with the REST route it mirrors (/admin/keys, /admin/teams, /admin/usage,
/admin/logs), page by page. Bad input (malformed, unknown fields, too deep, too costly, mutations,
the wrong key) gets an error in GraphQL's shape with a code, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from graphql import get_introspection_query

from tests.store import dbs
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import completion
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-graphql"
GROUPS = ("key", "team", "model", "provider", "tag", "status", "day", "hour")
db_url = dbs.db_url


def camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def as_graphql(obj: dict[str, Any]) -> dict[str, Any]:
    """A REST object as GraphQL shows it: camelCase names; a budget's too (metadata is JSON, as is)."""
    out = {}
    for k, v in obj.items():
        out[camel(k)] = {camel(a): b for a, b in v.items()} if k == "budget" and v is not None else v
    return out


def selection(obj: dict[str, Any]) -> str:
    """The GraphQL selection of every field of a REST object: a missing field fails validation."""
    return " ".join("budget { amountUsd period }" if k == "budget" else camel(k) for k in obj)


def config(up: FakeUpstream, store_url: str, tmp_path: Path, **graphql: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": store_url},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "admin": {"graphql": {"max_page_size": 100, "default_page_size": 20, **graphql}},
        "observability": {"logs": {"bodies": "full"}},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [
            {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
            {"name": "cheap", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
        ],
    }


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async def chat(request: web.Request) -> web.StreamResponse:
        if b"fail" in await request.read():
            return json_reply({"error": {"message": "bad prompt", "type": "invalid_request_error"}}, 400)
        return json_reply(completion("Hello there."))

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat)
        yield up


async def rest(gw: Gateway, method: str, path: str, key: str = MASTER, body: Any = None,
               params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {key}", **(headers or {})}) as s,
        s.request(method, gw.url + path, json=body, params=params) as r,
    ):
        return r.status, await r.json()


async def gql(gw: Gateway, query: str, variables: dict[str, Any] | None = None, key: str = MASTER,
              expect: int = 200) -> dict[str, Any]:
    status, body = await rest(gw, "POST", "/admin/graphql", key, {"query": query, "variables": variables})
    assert status == expect, body
    return body  # type: ignore[no-any-return]


async def data(gw: Gateway, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = await gql(gw, query, variables)
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def all_pages(gw: Gateway, field: str, args: str, select: str, first: int) -> tuple[list[Any], int]:
    """Every node of a connection, ``first`` at a time, following endCursor; and the page count."""
    nodes: list[Any] = []
    after: str | None = None
    pages = 0
    while True:
        q = (f"query($first: Int, $after: String) {{ {field}(first: $first, after: $after{args}) "
             f"{{ edges {{ cursor node {{ {select} }} }} pageInfo {{ hasNextPage endCursor }} }} }}")
        conn = (await data(gw, q, {"first": first, "after": after}))[field]
        pages += 1
        assert len(conn["edges"]) <= first
        nodes += [e["node"] for e in conn["edges"]]
        if conn["edges"]:
            assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, pages
        after = conn["pageInfo"]["endCursor"]


async def populate(gw: Gateway) -> dict[str, Any]:
    """Two teams, eight keys (one revoked, one admin), and calls through the gateway from several."""
    for name, extra in (("search", {"rpm": 100, "budget": {"amount_usd": 20, "period": "monthly"}}),
                        ("ops", {"models": ["cheap", "smart"], "metadata": {"owner": "ops@example.com"}})):
        status, _ = await rest(gw, "POST", "/admin/teams", body={"name": name, **extra})
        assert status == 201
    keys = []
    for i in range(8):
        body: dict[str, Any] = {"name": f"k{i}", "team": ["search", "ops", None][i % 3]}
        if i == 1:
            body |= {"rpm": 60, "tpm": 100000, "budget": {"amount_usd": 5.0, "period": "daily"},
                     "model_limits": {"smart": {"rpm": 5}}, "metadata": {"env": "ci", "n": [1, 2]}}
        if i == 2:
            body |= {"role": "admin", "models": ["smart", "openai/*"]}
        status, k = await rest(gw, "POST", "/admin/keys", body=body)
        assert status == 201, k
        keys.append(k)
    status, _ = await rest(gw, "DELETE", f"/admin/keys/{keys[5]['id']}")
    assert status == 200
    calls = 0
    for i in range(9):
        k = keys[[0, 1, 3, 4][i % 4]]["key"]
        text = "please fail" if i % 4 == 3 else f"hi {i}"
        hdrs = {"x-fluxway-tags": "batch,nightly"} if i % 3 == 0 else {}
        status, _ = await rest(gw, "POST", "/v1/chat/completions", k, headers=hdrs,
                               body={"model": "smart" if i % 2 else "cheap",
                                     "messages": [{"role": "user", "content": text}]})
        assert status in (200, 400)
        calls += 1
    await gw.runtime.governance.usage.flush()
    return {"keys": keys, "calls": calls}


async def test_graphql_returns_what_the_rest_admin_api_returns(upstream: FakeUpstream, tmp_path: Path,
                                                               db_url: str) -> None:
    async with run_gateway(config(upstream, db_url, tmp_path)) as gw:
        made = await populate(gw)
        keys = made["keys"]

        # keys: every field of GET /admin/keys, over several pages, in its order
        _, rest_keys = await rest(gw, "GET", "/admin/keys")
        fields = selection(rest_keys["data"][1])
        nodes, pages = await all_pages(gw, "keys", "", fields, first=3)
        assert pages == 3 and len(nodes) == 8
        assert nodes == [as_graphql(k) for k in rest_keys["data"]]
        for args, params in (('team: "search"', {"team": "search"}),
                             ("revoked: false", {"include_revoked": "false"})):
            got, _ = await all_pages(gw, "keys", ", " + args, fields, first=2)
            _, want = await rest(gw, "GET", "/admin/keys", params=params)
            assert got == [as_graphql(k) for k in want["data"]] and got, args
        revoked, _ = await all_pages(gw, "keys", ", revoked: true", "id revoked", first=5)
        assert revoked == [{"id": keys[5]["id"], "revoked": True}]
        admins, _ = await all_pages(gw, "keys", ', role: "admin"', "id", first=5)
        assert admins == [{"id": keys[2]["id"]}]
        one = await data(gw, f'{{ key(id: "{keys[1]["id"]}") {{ {fields} }} missing: key(id: "key_nope") {{ id }} }}')
        _, want_one = await rest(gw, "GET", f"/admin/keys/{keys[1]['id']}")
        assert one == {"key": as_graphql(want_one), "missing": None}
        assert one["key"]["budget"] == {"amountUsd": 5.0, "period": "daily"}
        assert one["key"]["modelLimits"] == want_one["model_limits"] and one["key"]["metadata"]["n"] == [1, 2]

        # teams, and a team with its keys
        _, rest_teams = await rest(gw, "GET", "/admin/teams")
        tfields = selection(rest_teams["data"][0])
        teams, pages = await all_pages(gw, "teams", "", tfields, first=1)
        assert pages == 2 and teams == [as_graphql(t) for t in rest_teams["data"]]
        t = await data(gw, f'{{ team(name: "search") {{ {tfields} keys(first: 100) {{ totalCount '
                           "edges { node { id teamDetails { name } } } } } "
                           'nope: team(name: "nope") { id } }')
        _, rest_search = await rest(gw, "GET", "/admin/keys", params={"team": "search"})
        _, rest_team = await rest(gw, "GET", "/admin/teams/search")
        assert {k: v for k, v in t["team"].items() if k != "keys"} == as_graphql(rest_team)
        assert [e["node"]["id"] for e in t["team"]["keys"]["edges"]] == [k["id"] for k in rest_search["data"]]
        assert t["team"]["keys"]["totalCount"] == len(rest_search["data"]) == 3
        assert {e["node"]["teamDetails"]["name"] for e in t["team"]["keys"]["edges"]} == {"search"}
        assert t["nope"] is None

        # usage: every grouping, all time and a range
        _, logs_all = await rest(gw, "GET", "/admin/logs", params={"limit": 1000})
        assert len(logs_all["data"]) == made["calls"]
        t0 = logs_all["data"][-1]["created_at"]
        for group in GROUPS:
            for since, until in ((None, None), (t0, "9999-01-01T00:00:00Z")):
                params = {"group_by": group} | ({"since": since, "until": until} if since else {})
                status, want = await rest(gw, "GET", "/admin/usage", params=params)
                assert status == 200 and want["data"], (group, want)
                cols = [camel(c) for c in want["data"][0] if c != group]
                rng = f', since: "{since}", until: "{until}"' if since else ""
                got = (await data(gw, f"{{ usage(groupBy: {group.upper()}{rng}) "
                                      f"{{ groupBy since until rows {{ group {' '.join(cols)} }} }} }}"))["usage"]
                assert got["groupBy"] == group.upper() and (got["since"], got["until"]) == (want["since"],
                                                                                          want["until"])
                expected = [{"group": None if d[group] is None else str(d[group]),
                             **{camel(k): v for k, v in d.items() if k != group}} for d in want["data"]]
                assert got["rows"] == expected, group
        _, by_key = await rest(gw, "GET", "/admin/usage", params={"group_by": "key"})
        assert {d["name"] for d in by_key["data"]} == {"k0", "k1", "k3", "k4"}  # the names came along
        # no groupBy: by key, as GET /admin/usage
        default = await data(gw, "{ usage { groupBy rows { group name requests } } }")
        assert default["usage"]["groupBy"] == "KEY"
        explicit_null = await data(gw, "{ usage(groupBy: null) { groupBy rows { group name requests } } }")
        assert explicit_null == default
        assert default["usage"]["rows"] == [{"group": d["key"], "name": d["name"], "requests": d["requests"]}
                                            for d in by_key["data"]]

        # logs: page by page as GET /admin/logs?limit=2 pages, with filters, with bodies
        lfields = selection(logs_all["data"][0])
        for args, params in (("", {}), (f', key: "{keys[0]["id"]}"', {"key": keys[0]["id"]}),
                             (', model: "smart"', {"model": "smart"}), (', status: "error"', {"status": "error"}),
                             (', status: "200"', {"status": "200"}), (f', since: "{t0}"', {"since": t0})):
            want_rows, cursor = [], None
            while True:
                _, page = await rest(gw, "GET", "/admin/logs", params={"limit": 2, **params,
                                                                      **({"cursor": cursor} if cursor else {})})
                want_rows += page["data"]
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
            got, pages = await all_pages(gw, "logs", args, lfields, first=2)
            assert got == [as_graphql(r) for r in want_rows] and got, args
            assert pages == max(1, (len(want_rows) + 1) // 2)
        errors = await data(gw, '{ logs(status: "error") { edges { node { status error } } } }')
        assert [e["node"]["status"] for e in errors["logs"]["edges"]] == [400, 400]
        _, with_bodies = await rest(gw, "GET", "/admin/logs", params={"bodies": "true", "limit": 1000})
        bfields = selection(with_bodies["data"][0])
        assert "requestBody" in bfields
        got = await data(gw, f"{{ logs(first: 100, bodies: true) {{ edges {{ node {{ {bfields} }} }} }} }}")
        assert [e["node"] for e in got["logs"]["edges"]] == [as_graphql(r) for r in with_bodies["data"]]
        assert all(e["node"]["requestBody"] for e in got["logs"]["edges"])
        plain = await data(gw, "{ logs(first: 1) { edges { node { requestBody keyDetails { name team } } } } }")
        node = plain["logs"]["edges"][0]["node"]
        assert node["requestBody"] is None and node["keyDetails"]["name"] in {"k0", "k1", "k3", "k4"}

        # never a secret or a hash: not in the types, not in the answers
        text = str(await gql(gw, f"{{ keys(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}"))
        assert not any(k["key"] in text for k in keys)
        types = await data(gw, '{ __type(name: "Key") { fields { name } } }')
        names = {f["name"].lower() for f in types["__type"]["fields"]}
        assert names and not names & {"key", "secret", "hash", "keyhash", "secrethash"}


async def test_introspection_describes_a_read_only_schema(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path)) as gw:
        body = await gql(gw, get_introspection_query(descriptions=True))
        assert "errors" not in body, body
        schema = body["data"]["__schema"]
        assert schema["queryType"]["name"] == "Query" and schema["mutationType"] is None
        assert schema["subscriptionType"] is None
        types = {t["name"]: t for t in schema["types"]}
        assert {"Query", "Key", "KeyConnection", "Team", "UsageRow", "LogEntry", "Prompt", "PageInfo"} <= set(types)
        query_fields = {f["name"] for f in types["Query"]["fields"]}
        assert query_fields == {"keys", "key", "teams", "team", "usage", "logs", "prompts"}
        assert [v["name"] for v in types["UsageGroup"]["enumValues"]] == [g.upper() for g in GROUPS]
        # GET works too, and the prompts field says plainly that there are none yet
        async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, s.get(
            gw.url + "/admin/graphql", params={"query": "{ prompts { totalCount } teams { totalCount } }"}
        ) as r:
            assert r.status == 200 and r.content_type == "application/json"
            got = await r.json()
        assert got["data"] == {"prompts": None, "teams": {"totalCount": 0}}
        assert got["errors"][0]["extensions"]["code"] == "NOT_AVAILABLE" and got["errors"][0]["path"] == ["prompts"]


async def raw(gw: Gateway, method: str, key: str | None = MASTER, **kw: Any) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession(headers=headers) as s, s.request(method, gw.url + "/admin/graphql", **kw) as r:
        return r.status, await r.json(content_type=None)


DEEP = "{ keys { edges { node { teamDetails { keys { edges { node { teamDetails { name } } } } } } } } }"
COSTLY = "{ keys(first: 100) { edges { node { teamDetails { keys(first: 100) { totalCount } } } } } }"

# (what is sent, the status, the error code, words the message must hold)
BAD: list[tuple[dict[str, Any], int, str, str]] = [
    ({"json": {"query": "{ keys { edges { node { id } }"}}, 400, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
    ({"json": {"query": "{ keys { edges { node { id secret } } } }"}}, 200, "GRAPHQL_VALIDATION_FAILED",
     "Cannot query field 'secret' on type 'Key'"),
    ({"json": {"query": "{ nothing }"}}, 200, "GRAPHQL_VALIDATION_FAILED", "Cannot query field 'nothing'"),
    ({"json": {"query": "{ keys(colour: 1) { totalCount } }"}}, 200, "GRAPHQL_VALIDATION_FAILED", "colour"),
    ({"json": {"query": "{ keys }"}}, 200, "GRAPHQL_VALIDATION_FAILED", "must have a selection"),
    ({"json": {"query": DEEP}}, 200, "QUERY_TOO_DEEP", "9 levels deep; at most 8"),
    ({"json": {"query": "{a" * 3000 + "}" * 3000}}, 400, "QUERY_TOO_DEEP", "nests too deeply"),
    ({"json": {"query": COSTLY}}, 200, "QUERY_TOO_COSTLY", "the query costs"),
    ({"json": {"query": "query($n: Int) { keys(first: 100) { edges { node { teamDetails { keys(first: $n) "
                        "{ totalCount } } } } } }", "variables": {"n": 100}}}, 200, "QUERY_TOO_COSTLY", "costs"),
    ({"json": {"query": "{" + " ".join(f"a{i}: __typename" for i in range(600)) + "}"}}, 200, "QUERY_TOO_COSTLY",
     "600 selections"),
    ({"json": {"query": "{ __typename }" + " " * 20000}}, 413, "QUERY_TOO_LARGE", "at most 16384"),
    ({"json": {"query": 'mutation { createKey(name: "x") { id } }'}}, 200, "OPERATION_NOT_SUPPORTED", "read-only"),
    ({"json": {"query": "subscription { keys { totalCount } }"}}, 200, "OPERATION_NOT_SUPPORTED", "read-only"),
    ({"data": b"{not json", "headers": {"content-type": "application/json"}}, 400, "BAD_REQUEST", "must be JSON"),
    ({"json": [1, 2]}, 400, "BAD_REQUEST", "JSON object"),
    ({"json": {"variables": {}}}, 400, "BAD_REQUEST", "'query' is required"),
    ({"json": {"query": 7}}, 400, "BAD_REQUEST", "'query' is required"),
    ({"json": {"query": "{ __typename }", "variables": [1]}}, 400, "BAD_REQUEST", "'variables' must be"),
    ({"json": {"query": "{ __typename }", "operationName": 3}}, 400, "BAD_REQUEST", "'operationName'"),
    ({"json": {"query": "query A { __typename } query B { __typename }"}}, 400, "BAD_REQUEST", "operationName"),
    ({"json": {"query": "query A { __typename }", "operationName": "Z"}}, 400, "BAD_REQUEST", "no operation named 'Z'"),
    ({"json": {"query": "fragment F on Key { id }"}}, 400, "BAD_REQUEST", "no operation"),
    ({"json": {"query": "query($n: Int!) { keys(first: $n) { totalCount } }", "variables": {"n": "ten"}}},
     200, "BAD_USER_INPUT", "Int cannot represent"),
    ({"json": {"query": "query($n: Int!) { keys(first: $n) { totalCount } }"}}, 200, "BAD_USER_INPUT",
     "was not provided"),
    ({"json": {"query": "{ keys(first: 101) { totalCount } }"}}, 200, "BAD_USER_INPUT", "between 1 and 100"),
    ({"json": {"query": "{ logs(first: 0) { edges { cursor } } }"}}, 200, "BAD_USER_INPUT", "between 1 and 100"),
    ({"json": {"query": '{ keys(after: "bm9wZQ") { totalCount } }'}}, 200, "BAD_USER_INPUT", "invalid cursor"),
    ({"json": {"query": '{ logs(after: "!!") { edges { cursor } } }'}}, 200, "BAD_USER_INPUT", "invalid cursor"),
    ({"json": {"query": '{ usage(since: "next week") { rows { group } } }'}}, 200, "BAD_USER_INPUT", "'since'"),
    ({"json": {"query": '{ logs(status: "teapot") { edges { cursor } } }'}}, 200, "BAD_USER_INPUT", "'status'"),
    ({"json": {"query": '{ logs(key: "a\\u0000b") { edges { cursor } } }'}}, 200, "BAD_USER_INPUT", "control"),
    ({"json": {"query": "{ usage(groupBy: COLOUR) { rows { group } } }"}}, 200, "GRAPHQL_VALIDATION_FAILED",
     "COLOUR"),
]


async def test_bad_input_gets_a_clear_error_never_a_500(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path)) as gw:
        await rest(gw, "POST", "/admin/teams", body={"name": "t"})
        await rest(gw, "POST", "/admin/keys", body={"name": "a", "team": "t"})
        for kw, status, code, words in BAD:
            got_status, body = await raw(gw, "POST", **kw)
            label = str(kw)[:120]
            assert got_status == status, (label, got_status, body)
            errs = body["errors"]
            assert errs and errs[0]["extensions"]["code"] == code, (label, body)
            assert words in errs[0]["message"], (label, errs[0]["message"])
            assert "Traceback" not in str(body)
        # GET: the same, and a mutation is 405 there (GraphQL over HTTP)
        status, body = await raw(gw, "GET", params={"query": "{ teams { edges { node { name } } } }"})
        assert status == 200 and body == {"data": {"teams": {"edges": [{"node": {"name": "t"}}]}}}
        status, body = await raw(gw, "GET", params={"query": "mutation { x }"})
        assert status == 405 and body["errors"][0]["extensions"]["code"] == "OPERATION_NOT_SUPPORTED"
        status, body = await raw(gw, "GET")
        assert status == 400 and "'query' is required" in body["errors"][0]["message"]
        status, body = await raw(gw, "GET", params={"query": "{ __typename }", "variables": "{oops"})
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        status, body = await raw(gw, "PUT", json={"query": "{ __typename }"})
        assert status == 405 and body["error"]["code"] == "method_not_allowed"
        # the admin API's auth, in its shape: no key, an unknown key, a key without the admin role
        _, user = await rest(gw, "POST", "/admin/keys", body={"name": "user"})
        for key, want in ((None, 401), ("sk-fw-unknown", 401), (user["key"], 403)):
            status, body = await raw(gw, "POST", key=key, json={"query": "{ keys { totalCount } }"})
            assert status == want and body["error"]["message"], (key, body)
        # an admin-role key is an admin
        _, admin = await rest(gw, "POST", "/admin/keys", body={"name": "adm", "role": "admin"})
        assert (await gql(gw, "{ keys { totalCount } }", key=admin["key"]))["data"]["keys"]["totalCount"] == 3


async def test_a_failing_resolver_shows_no_internals(upstream: FakeUpstream, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async with run_gateway(config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path)) as gw:
        gov = gw.runtime.governance

        async def broken(**_: Any) -> Any:
            raise KeyError("secret internals")

        async def store_down(*_: Any, **__: Any) -> Any:
            raise OSError("connection refused by 10.0.0.7")

        monkeypatch.setattr(gov.accounts, "list_teams", broken)
        monkeypatch.setattr(gov.store.usage, "aggregate", store_down)
        body = await gql(gw, "{ teams { totalCount } usage { rows { group } } keys { totalCount } }")
        assert body["data"] == {"teams": None, "usage": None, "keys": {"totalCount": 0}}
        by_path = {e["path"][0]: e for e in body["errors"]}
        assert by_path["teams"]["message"] == "internal error"
        assert by_path["teams"]["extensions"]["code"] == "INTERNAL_ERROR"
        assert by_path["usage"]["extensions"]["code"] == "STORE_UNAVAILABLE"
        assert "10.0.0.7" not in str(body) and "secret internals" not in str(body)
        assert "secret internals" in caplog.text  # logged, with its traceback


async def test_graphql_can_be_switched_off(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path, enabled=False)) as gw:
        status, body = await raw(gw, "POST", json={"query": "{ keys { totalCount } }"})
        assert status == 404 and body["error"]["code"] == "not_found"
        status, _ = await rest(gw, "GET", "/admin/keys")
        assert status == 200


async def test_limits_follow_the_config(upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path, max_depth=3, max_cost=30,
                 max_query_bytes=300)
    async with run_gateway(cfg) as gw:
        ok = await data(gw, "{ keys(first: 9) { totalCount } }")  # depth 2, cost 1 + 9 * 1
        assert ok == {"keys": {"totalCount": 0}}
        deep = await gql(gw, "{ keys { edges { node { id } } } }")
        assert deep["errors"][0]["extensions"] == {"code": "QUERY_TOO_DEEP", "depth": 4, "maxDepth": 3}
        costly = await gql(gw, "{ keys(first: 10) { totalCount pageInfo { hasNextPage } } }")  # 1 + 10 * 3
        assert costly["errors"][0]["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 31, "maxCost": 30}
        big = await gql(gw, "{ __typename " + "  " * 200 + "}", expect=413)
        assert big["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE"
        # a body far past what such a query needs is not read to its end: 8 x the query cap + 64 KiB
        huge = b'{"query": "{ __typename }", "variables": {"pad": "' + b"x" * 70000 + b'"}}'
        status, body = await raw(gw, "POST", data=huge, headers={"content-type": "application/json"})
        assert status == 413 and body["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE"
        fits = b'{"query": "{ __typename }", "variables": {"pad": "' + b"x" * 60000 + b'"}}'
        status, body = await raw(gw, "POST", data=fits, headers={"content-type": "application/json"})
        assert status == 200 and body == {"data": {"__typename": "Query"}}
