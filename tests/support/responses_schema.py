"""Checks Response objects and Responses stream events against OpenAI's published schemas (the
subset in tests/fixtures/openai_responses/schema.json, its source in SOURCES.md there)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

_SCHEMA = Path(__file__).parents[1] / "fixtures" / "openai_responses" / "schema.json"


@cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_SCHEMA.read_text())
    return doc


def _check(name: str, value: Any) -> None:
    doc = _doc()
    jsonschema.validate(value, {"$schema": doc["$schema"], "$defs": doc["$defs"], "$ref": f"#/$defs/{name}"})


def check_response(response: Any) -> None:
    _check("Response", response)


def check_item_list(page: Any) -> None:
    _check("ResponseItemList", page)


def check_events(events: list[dict[str, Any]]) -> None:
    """Each event against its schema; sequence numbers 0, 1, 2, ...; the lifecycle in order."""
    for n, event in enumerate(events):
        kind = event.get("type")
        assert f"Event:{kind}" in _doc()["$defs"], f"unexpected event type {kind!r}"
        _check(f"Event:{kind}", event)
        assert event["sequence_number"] == n, (n, event)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in ("response.completed", "response.incomplete", "response.failed"), kinds
