"""One record the store refuses never blocks the others: it is isolated and quarantined (issue 9 #1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fluxway.store import Store
from fluxway.store.quarantine import Quarantine
from fluxway.store.sanitize import sanitize_record
from tests.store import dbs

db_url = dbs.db_url


def _record(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"rec{i}", "request_id": f"r{i}", "created_at": 1.0 + i, "day": "1970-01-01", "status": 200,
            "stream": False, "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0, "cost_usd": 0.0,
            "price_known": True, "estimated": False, "attempts": 1, **extra}


async def _poison(store: Store) -> None:
    """Make the database refuse records of model 'poison' (a constraint sanitising cannot know)."""
    async with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            await conn.execute(sa.text("ALTER TABLE usage_records ADD CONSTRAINT no_poison CHECK (model <> 'poison')"))
        else:
            await conn.execute(sa.text(
                "CREATE TRIGGER no_poison BEFORE INSERT ON usage_records WHEN NEW.model = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison'); END"
            ))


async def test_a_refused_record_is_quarantined_and_the_rest_stored(db_url: str, tmp_path: Path) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        await _poison(store)
        q = Quarantine(tmp_path)
        records = [_record(i) for i in range(10)]
        records[4]["model"] = "poison"
        rejected = await store.usage.insert(records, batch_size=3, on_reject=q.record)
        assert rejected == 1 and q.count == 1
        assert await store.usage.count() == 9
        assert (tmp_path / "quarantine.jsonl").read_text().count('"rec4"') == 1
        # replaying the same records is harmless: stored ones are skipped, the poison one refused again
        assert await store.usage.insert(records, on_reject=q.record) == 1
        assert await store.usage.count() == 9
    finally:
        await store.close()


async def test_sanitised_records_fit_every_column(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        await store.upgrade()
        hostile = _record(
            1, request_id="x" * 500, model="a\x00b" + "m" * 400, provider="\ud800p", error="e\x00" * 10,
            prompt_tokens=2**70, completion_tokens=float("nan"), cached_tokens="12", cost_usd=float("inf"),
            latency_ms=-1.0, status=2**40, attempts=None,
        )
        assert await store.usage.insert([hostile]) == 0
        rows, _ = await store.usage.logs()
        (row,) = rows
        assert row["request_id"].startswith("req_") and len(row["request_id"]) <= 128
        assert row["model"].startswith("ab") and len(row["model"]) == 256
        assert row["prompt_tokens"] == 2**63 - 1 and row["completion_tokens"] == 0 and row["cached_tokens"] == 12
        assert row["cost_usd"] == 0.0 and row["latency_ms"] == 0.0 and row["status"] == 2**31 - 1
        assert "\x00" not in row["error"]
        assert sanitize_record(row)["request_id"] == row["request_id"]  # stable once clean
    finally:
        await store.close()
