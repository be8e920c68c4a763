"""docs/graphql.md stays true: every ```graphql example in it runs against a gateway with keys, teams
and calls. An example that starts with ``# error: CODE`` must fail with that code; every other one
must answer without an error and with something in each of its top-level fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_graphql_e2e import config, gql, populate, upstream  # noqa: F401 (the fixture)
from tests.support.gateway import run_gateway
from tests.support.upstream import FakeUpstream

DOC = Path(__file__).resolve().parents[2] / "docs" / "graphql.md"
EXAMPLE = re.compile(r"^```graphql\n(.*?)^```", re.S | re.M)


def examples() -> list[str]:
    return EXAMPLE.findall(DOC.read_text())


def test_the_page_has_examples_of_each_kind() -> None:
    found = examples()
    assert len(found) >= 8
    assert any(e.startswith("# error:") for e in found) and any(not e.startswith("# error:") for e in found)
    for field in ("keys", "team", "usage", "logs"):
        assert any(re.search(rf"\b{field}\s*\(", e) for e in found), field


def _filled(value: Any) -> bool:
    """Something was found: a non-empty list of edges or rows somewhere, or a non-null object."""
    if isinstance(value, dict):
        if "edges" in value or "rows" in value:
            return bool(value.get("edges") or value.get("rows"))
        return all(_filled(v) for k, v in value.items() if isinstance(v, dict | list) and k != "metadata")
    if isinstance(value, list):
        return bool(value)
    return value is not None


async def test_every_example_runs(upstream: FakeUpstream, tmp_path: Path) -> None:  # noqa: F811
    async with run_gateway(config(upstream, f"sqlite:///{tmp_path}/f.db", tmp_path)) as gw:
        await populate(gw)
        for example in examples():
            first = example.splitlines()[0]
            body = await gql(gw, example, expect=200)
            if first.startswith("# error:"):
                code = first.split(":", 1)[1].strip()
                assert body["errors"][0]["extensions"]["code"] == code, (example, body)
                continue
            assert "errors" not in body, (example, body)
            for name, value in body["data"].items():
                assert _filled(value), (example, name, value)


@pytest.mark.parametrize("needle", ["admin.graphql", "max_depth", "max_cost", "BAD_USER_INPUT"])
def test_the_page_names_its_settings_and_codes(needle: str) -> None:
    assert needle in DOC.read_text()
