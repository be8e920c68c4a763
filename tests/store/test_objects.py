"""The surface's ownership table: one key never reads another's objects; a batch's usage is claimed once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fluxway.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/s.db")
    await s.upgrade()
    yield s
    await s.close()


async def test_objects_are_found_only_by_their_owner(store: Store) -> None:
    objects = store.objects
    assert await objects.put("file", "file-1", "alice", "up", {"id": "file-1", "purpose": "batch"}, 1.0,
                             {"models": {"gpt-4o-mini": "smart"}})
    assert not await objects.put("file", "file-1", "bob", "up", {"id": "file-1"}, 2.0)  # not taken over
    got = await objects.get("file-1", "alice", "file")
    assert got is not None and got.provider == "up" and got.meta == {"models": {"gpt-4o-mini": "smart"}}
    assert await objects.get("file-1", "bob", "file") is None
    assert await objects.get("file-1", "alice", "batch") is None
    await objects.delete("file-1", "bob")
    assert await objects.get("file-1", "alice", "file") is not None
    await objects.delete("file-1", "alice")
    assert await objects.get("file-1", "alice", "file") is None


async def test_pages_newest_first_after_a_cursor(store: Store) -> None:
    objects = store.objects
    for i in range(5):
        await objects.put("batch", f"b{i}", "alice", "up", {"id": f"b{i}", "purpose": "x" if i % 2 else "y"},
                          float(i))
    await objects.put("batch", "other", "bob", "up", {"id": "other"}, 9.0)
    rows, more = await objects.page("batch", "alice", 2)
    assert [r.id for r in rows] == ["b4", "b3"] and more
    rows, more = await objects.page("batch", "alice", 2, after="b3")
    assert [r.id for r in rows] == ["b2", "b1"] and more
    rows, more = await objects.page("batch", "alice", 2, after="b1")
    assert [r.id for r in rows] == ["b0"] and not more
    rows, _ = await objects.page("batch", "alice", 10, ascending=True)
    assert [r.id for r in rows] == ["b0", "b1", "b2", "b3", "b4"]
    rows, _ = await objects.page("batch", "alice", 10, purpose="x")
    assert [r.id for r in rows] == ["b3", "b1"]


async def test_a_batch_usage_claim_is_won_once(store: Store) -> None:
    objects = store.objects
    await objects.put("batch", "b", "alice", "up", {"id": "b"}, 1.0)
    wins = await asyncio.gather(*(objects.claim_usage("b", 2.0) for _ in range(5)))
    assert wins.count(True) == 1
    assert (await objects.get("b", "alice", "batch")).usage_recorded  # type: ignore[union-attr]
    await objects.unclaim_usage("b")
    assert await objects.claim_usage("b", 3.0)
