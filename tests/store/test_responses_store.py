"""Stored responses on SQLite and PostgreSQL: per-key reads, deletes, retention."""

from __future__ import annotations

from fluxway.store import Store
from fluxway.store.responses import ResponseStore, StoredResponse
from tests.store import dbs

db_url = dbs.db_url


def _record(rid: str, key: str, created: float = 1000.0) -> StoredResponse:
    return StoredResponse(
        id=rid, key_id=key, created_at=created, model="smart", previous_response_id="resp_prev",
        context=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "before"}]}],
        input=[{"type": "function_call_output", "call_id": "c", "output": "ünïcode ✓"}],
        response={"id": rid, "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}]},
    )


async def test_a_key_reads_and_deletes_only_its_own(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        now = [1000.0]
        responses = ResponseStore(store.engine, clock=lambda: now[0])
        await responses.put(_record("resp_a", "key-a"), retention_s=60)
        got = await responses.get("resp_a", "key-a")
        assert got is not None and got.previous_response_id == "resp_prev"
        assert [i["type"] for i in got.history] == ["message", "function_call_output", "message"]
        assert got.input[0]["output"] == "ünïcode ✓"
        assert await responses.get("resp_a", "key-b") is None
        assert await responses.delete("resp_a", "key-b") is False
        assert await responses.get("resp_a", "key-a") is not None
        assert await responses.get("x" * 500, "key-a") is None
        now[0] = 1061.0  # past retention: gone for reads, and purged by the next write
        assert await responses.get("resp_a", "key-a") is None
        await responses.put(_record("resp_b", "key-a", created=1061.0), retention_s=60)
        now[0] = 1000.0
        assert await responses.get("resp_a", "key-a") is not None  # purged at most once an hour: not yet
        now[0] = 1000.0 + 3601
        await responses.put(_record("resp_c", "key-a", created=now[0]), retention_s=60)
        now[0] = 1000.0
        assert await responses.get("resp_a", "key-a") is None  # the row itself was purged
        assert await responses.get("resp_b", "key-a") is None
        now[0] = 1000.0 + 3602
        assert await responses.delete("resp_c", "key-a") is True
        assert await responses.get("resp_c", "key-a") is None
    finally:
        await store.close()
