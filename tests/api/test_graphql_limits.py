"""The GraphQL limits (depth, cost, selections) and cursor pagination, on documents and lists."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from graphql import GraphQLError, OperationDefinitionNode, get_introspection_query, parse
from hypothesis import given
from hypothesis import strategies as st

from fluxway.api.graphql import limits, pagination
from fluxway.api.graphql.schema import build
from fluxway.config_observability import GraphqlConfig

SCHEMA = build()
CFG = GraphqlConfig(max_page_size=100, default_page_size=10)


def measure(query: str, variables: dict[str, Any] | None = None) -> tuple[int, int]:
    doc = parse(query)
    op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    frags = {d.name.value: d for d in doc.definitions if d.kind == "fragment_definition"}  # type: ignore[attr-defined]
    return limits.measure(SCHEMA, op, frags, variables or {}, CFG)


@pytest.mark.parametrize(("query", "depth", "cost"), [
    ("{ __typename }", 0, 0),
    ("{ key(id: \"a\") { id name } }", 2, 3),
    ("{ keys { totalCount } }", 2, 1 + 10 * 1),  # the default page size
    ("{ keys(first: 3) { edges { node { id name } } } }", 4, 1 + 3 * (1 + 1 + 2)),
    ("{ keys(first: 3000) { totalCount } }", 2, 1 + 100 * 1),  # as the resolver would take it: capped
    ("query($n: Int) { keys(first: $n) { totalCount } }", 2, 1 + 10),
    ("{ a: keys(first: 2) { totalCount } b: keys(first: 4) { totalCount } }", 2, (1 + 2) + (1 + 4)),
    ("{ teams(first: 2) { edges { node { keys(first: 5) { totalCount } } } } }", 5, 1 + 2 * (1 + 1 + (1 + 5))),
    ("{ keys(first: 2) { ...K } } fragment K on KeyConnection { totalCount edges { cursor } }", 3, 1 + 2 * 3),
    ("{ keys(first: 2) { ...K ...K } } fragment K on KeyConnection { totalCount }", 2, 1 + 2 * 2),
    ("{ keys(first: 2) { ... on KeyConnection { totalCount } } }", 2, 1 + 2),
    ("{ keys(first: 2) { nope { deeper } } }", 3, 1 + 2 * 2),  # unknown fields: 1 each (validation tells)
    ("{ logs(first: 5, bodies: true) { edges { node { keyDetails { teamDetails { name } } } } } }", 6,
     1 + 5 * (1 + 1 + 1 + 1 + 1)),
])
def test_depth_and_cost(query: str, depth: int, cost: int) -> None:
    assert measure(query) == (depth, cost)


def test_a_variable_page_size_counts_as_given() -> None:
    q = "query($n: Int) { keys(first: $n) { totalCount } }"
    assert measure(q, {"n": 7}) == (2, 8)
    assert measure(q, {"n": "seven"}) == (2, 101)  # a wrong value: counted at the largest (it will fail anyway)
    with_default = "query($n: Int = 60) { keys(first: $n) { totalCount } }"
    assert measure(with_default) == (2, 61)
    assert measure(with_default, {"n": 3}) == (2, 4)
    assert measure(with_default, {"n": None}) == (2, 11)  # an explicit null: the resolver's default


def test_introspection_costs_nothing() -> None:
    assert measure(get_introspection_query(descriptions=True)) == (0, 0)


def test_a_fragment_cycle_ends_the_walk() -> None:
    q = "{ keys { ...A } } fragment A on KeyConnection { ...B } fragment B on KeyConnection { ...A totalCount }"
    assert measure(q) == (2, 1 + 10 * 1)


def test_check_names_the_limit_passed() -> None:
    def err(query: str, cfg: GraphqlConfig) -> GraphQLError | None:
        doc = parse(query)
        op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
        return limits.check(SCHEMA, doc, op, {}, cfg)

    assert err("{ keys { totalCount } }", CFG) is None
    deep = err("{ keys { edges { node { id } } } }", GraphqlConfig(max_depth=3))
    assert deep is not None and deep.extensions == {"code": "QUERY_TOO_DEEP", "depth": 4, "maxDepth": 3}
    costly = err("{ keys(first: 10) { totalCount } }", GraphqlConfig(max_cost=10))
    assert costly is not None and costly.extensions == {"code": "QUERY_TOO_COSTLY", "cost": 11, "maxCost": 10}
    wide = err("{ a: __typename b: __typename c: __typename }", GraphqlConfig(max_selections=2))
    assert wide is not None and wide.extensions is not None and wide.extensions["selections"] == 3
    assert limits.selections(parse("{ a { b ...F ... on X { c } } } fragment F on T { d }")) == 6


# pagination -----------------------------------------------------------------------------------

ITEMS = [{"id": f"k{i}", "at": float(i // 2)} for i in range(7)]  # ties on "at": the id breaks them


def page(first: int, after: str | None, items: list[dict[str, Any]] = ITEMS) -> dict[str, Any]:
    return pagination.connection(items, lambda r: (r["at"], r["id"]), (float, str), first=first, after=after,
                                 out=lambda r: {"id": r["id"]})


@given(first=st.integers(1, 8))
def test_pages_cover_the_list_once_in_order(first: int) -> None:
    seen, after = [], None
    while True:
        p = page(first, after)
        assert p["total_count"] == len(ITEMS)
        seen += [e["node"]["id"] for e in p["edges"]]
        if not p["page_info"]["has_next_page"]:
            break
        after = p["page_info"]["end_cursor"]
    assert seen == [r["id"] for r in ITEMS]


def test_a_cursor_survives_its_item_going_away() -> None:
    cursor = page(3, None)["page_info"]["end_cursor"]  # after k2
    rest = [r for r in ITEMS if r["id"] != "k2"]
    assert [e["node"]["id"] for e in page(10, cursor, rest)["edges"]] == ["k3", "k4", "k5", "k6"]


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["", "!!", "bm9wZQ", _b64([1.0]), _b64(["k1", 1.0]), _b64([True, "k"]),
                                    _b64({"at": 1}), _b64([1.0, "k", 3]), _b64([None, "k"])])
def test_a_bad_cursor_is_bad_input(cursor: str) -> None:
    with pytest.raises(GraphQLError) as info:
        page(2, cursor)
    assert info.value.extensions == {"code": "BAD_USER_INPUT", "param": "after"}


def test_page_size_bounds() -> None:
    assert pagination.page_size(None, 10, 100) == 10
    assert pagination.page_size(100, 10, 100) == 100
    for bad in (0, -1, 101):
        with pytest.raises(GraphQLError, match="between 1 and 100"):
            pagination.page_size(bad, 10, 100)
