from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fluxway.canonical import CanonicalRequest, Endpoint, Target, Usage
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.policy.hooks import CallContext, Outcome, Principal
from fluxway.policy.pricing import Pricer
from fluxway.policy.usage import Spool, UsageRecorder, read_segment
from fluxway.store import Store
from tests.store import dbs

db_url = dbs.db_url


class FakeStore:
    """A store double that can be made to fail, to see what the recorder does with its records."""

    def __init__(self) -> None:
        self.rows: dict[str, Mapping[str, Any]] = {}
        self.fail = False
        self.calls = 0

    async def insert(self, records: Sequence[Mapping[str, Any]], batch_size: int = 500, on_reject: Any = None) -> int:
        self.calls += 1
        if self.fail:
            raise ConnectionError("database is down")
        for r in records:
            self.rows.setdefault(r["id"], r)
        return 0


def _pricer() -> Pricer:
    cfg = parse(
        {
            "providers": [{"name": "oai", "type": "openai", "api_keys": ["k"]}],
            "models": [{"name": "smart", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}],
        }
    )
    return Pricer(cfg)


def _ctx(i: int = 0, principal: Principal | None = None) -> CallContext:
    req = CanonicalRequest(Endpoint.CHAT, "smart", {"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    return CallContext(f"req-{i}", "openai", {}, None, req, principal=principal)


def _ok() -> Outcome:
    return Outcome(200, Target("oai", "gpt-4o-mini"), 1, Usage(1000, 500, 200), latency_ms=12.3456, cache="miss")


def _recorder(store: Any, tmp_path: Path, **kw: Any) -> UsageRecorder:
    return UsageRecorder(store, _pricer(), tmp_path / "spool", clock=lambda: 1_750_000_000.5, **kw)


async def test_record_fields() -> None:
    rec = _recorder(FakeStore(), Path("/nonexistent")).record(
        _ctx(1, Principal(id="key_1", team="search")), _ok()
    )
    assert rec["request_id"] == "req-1" and 16 < len(rec["id"]) <= 32
    assert (rec["key_id"], rec["team"], rec["model"], rec["provider"], rec["upstream_model"]) == (
        "key_1", "search", "smart", "oai", "gpt-4o-mini"
    )
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["cached_tokens"]) == (1000, 500, 200)
    assert rec["cost_usd"] == pytest.approx((800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6)
    assert rec["price_known"] and not rec["estimated"]
    assert rec["day"] == "2025-06-15" and rec["status"] == 200 and rec["latency_ms"] == 12.346

    failed = _recorder(FakeStore(), Path("/x")).record(
        _ctx(2), Outcome(502, error=GatewayError(502, "every target failed"), latency_ms=3.0)
    )
    assert failed["cost_usd"] == 0 and failed["error"] == "every target failed" and failed["provider"] is None

    no_usage = _recorder(FakeStore(), Path("/x")).record(_ctx(3), Outcome(200, Target("oai", "gpt-4o-mini"), 1))
    assert no_usage["estimated"] and no_usage["prompt_tokens"] > 0


async def test_post_spools_then_flush_stores_and_deletes(tmp_path: Path) -> None:
    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=3600)
    await rec.start()
    for i in range(5):
        await rec.post(_ctx(i), _ok())
    files = list((tmp_path / "spool").glob("*.jsonl"))
    assert len(files) == 1 and len(read_segment(files[0])) == 5  # on disk before any flush
    assert store.rows == {}
    assert await rec.flush() == 5
    assert len(store.rows) == 5
    assert [len(read_segment(f)) for f in (tmp_path / "spool").glob("*.jsonl")] == [0]  # only the new, empty one
    await rec.close()
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


async def test_store_outage_keeps_records_until_it_is_back(tmp_path: Path) -> None:
    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=0.01)
    await rec.start()
    store.fail = True
    for i in range(3):
        await rec.post(_ctx(i), _ok())
    for _ in range(50):
        if not rec.healthy:
            break
        await asyncio.sleep(0.01)
    assert not rec.healthy and store.rows == {}
    await rec.post(_ctx(3), _ok())
    store.fail = False
    for _ in range(300):
        if len(store.rows) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(store.rows) == 4 and rec.healthy
    await rec.close()


async def test_shutdown_with_store_down_keeps_spool_for_next_start(tmp_path: Path) -> None:
    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=3600)
    await rec.start()
    for i in range(4):
        await rec.post(_ctx(i), _ok())
    store.fail = True
    await rec.close()
    store.fail = False
    again = _recorder(store, tmp_path, flush_interval=3600)
    assert await again.start() == 4
    assert len(store.rows) == 4
    await again.close()


async def test_batch_size_wakes_the_flusher(tmp_path: Path) -> None:
    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=3600, batch_size=10)
    await rec.start()
    for i in range(10):
        await rec.post(_ctx(i), _ok())
    for _ in range(200):
        if len(store.rows) == 10:
            break
        await asyncio.sleep(0.01)
    assert len(store.rows) == 10
    await rec.close()


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from fluxway.policy.usage import Spool
    spool = Spool(sys.argv[1])
    spool.open()
    for i in range(int(sys.argv[2])):
        spool.append({"id": f"rec-{i:05d}", "request_id": f"r{i}", "created_at": 1.0, "day": "1970-01-01",
                      "status": 200, "stream": False, "prompt_tokens": 1, "completion_tokens": 1,
                      "cached_tokens": 0, "cost_usd": 0.0, "price_known": True, "estimated": False,
                      "attempts": 1})
        if i == 120:
            spool.rotate()  # one rotated-but-unstored segment and one current one
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


async def test_kill_9_then_replay_loses_nothing_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(spool_dir), "300"], check=False)
    assert proc.returncode == -9
    segments = sorted(spool_dir.glob("*.jsonl"))
    assert len(segments) == 2
    with segments[-1].open("ab") as f:
        f.write(b'{"id": "torn-rec", "request_id": "x", "crea')  # a torn last line is skipped
    backup = tmp_path / "backup"
    shutil.copytree(spool_dir, backup)

    store = Store.open(db_url)
    try:
        await store.upgrade()
        rec = UsageRecorder(store.usage, _pricer(), spool_dir, flush_interval=3600)
        assert await rec.start() == 300
        await rec.close()
        assert await store.usage.count() == 300
        # the same segments replayed again (a crash between insert and delete) add nothing
        for f in backup.iterdir():
            shutil.copy(f, spool_dir / f.name)
        rec = UsageRecorder(store.usage, _pricer(), spool_dir, flush_interval=3600)
        assert await rec.start() == 300
        await rec.close()
        ids = await store.usage.ids()
        assert len(ids) == 300 and len({i for i, _ in ids}) == 300
    finally:
        await store.close()


async def test_live_segments_of_another_process_are_not_replayed(tmp_path: Path) -> None:
    a = Spool(tmp_path)
    a.open()
    a.append({"id": "a1"})
    b = Spool(tmp_path)  # a second worker sharing the directory
    b.open()
    assert b.orphans() == []
    assert len(read_segment(next(iter(tmp_path.glob("*.jsonl"))))) in (0, 1)
    a.close()  # a stops with a record still spooled: now it is an orphan for b
    orphans = b.orphans()
    assert [len(read_segment(s.path)) for s in orphans] == [1]
    for s in orphans:
        Spool.remove(s)
    b.close()


async def test_unmasked_bodies_never_reach_the_spool_and_a_replayed_record_says_lost(tmp_path: Path) -> None:
    from fluxway.policy.bodies import BodyCapture

    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=3600, bodies=BodyCapture("redacted"))
    await rec.start()
    ctx = _ctx(1)
    ctx.request.body["messages"][0]["content"] = "reach me at carol@example.org"
    await rec.post(ctx, _ok())
    disk = b"".join(f.read_bytes() for f in (tmp_path / "spool").glob("*.jsonl"))
    assert b"carol@example.org" not in disk and b'"body_status":"lost"' in disk
    store.fail = True  # the flush fails: the in-memory snapshot is dropped, the record read back later
    with pytest.raises(ConnectionError):
        await rec.flush()
    store.fail = False
    assert await rec.flush() == 1
    stored = next(iter(store.rows.values()))
    assert stored["body_status"] == "lost" and stored.get("request_body") is None

    await rec.post(_ctx(2), _ok())  # the normal path: settled at the flush
    await rec.flush()
    settled = store.rows[max(store.rows)]
    assert settled["body_status"] == "redacted" and '"content":"hi"' in settled["request_body"]
    await rec.close()


async def test_bodies_past_the_backlog_cap_are_dropped_and_said_so(tmp_path: Path) -> None:
    """A flush that falls behind never lets captured bodies grow memory without bound."""
    from fluxway.policy.bodies import BodyCapture

    store = FakeStore()
    size = BodyCapture.size(BodyCapture("full").snapshot(_ctx(0), _ok()))
    # The cap is reached after the second record.
    rec = _recorder(store, tmp_path, flush_interval=3600, bodies=BodyCapture("full"), body_backlog_bytes=2 * size)
    await rec.start()
    for i in range(5):
        await rec.post(_ctx(i), _ok())
    assert rec.bodies_dropped == 3 and rec.pending == 5
    assert await rec.flush() == 5
    statuses = sorted(r["body_status"] for r in store.rows.values())
    assert statuses == ["dropped"] * 3 + ["full"] * 2
    assert all(r.get("request_body") is None for r in store.rows.values() if r["body_status"] == "dropped")
    # Settled bodies no longer count: the next records keep theirs again.
    await rec.post(_ctx(10), _ok())
    await rec.flush()
    assert store.rows[max(store.rows)]["body_status"] == "full" and rec.bodies_dropped == 3 and rec.pending == 0
    await rec.close()


async def test_records_past_max_in_memory_are_read_back_from_the_spool(tmp_path: Path) -> None:
    """A store that is behind: older records wait on disk only, and none is lost."""
    from fluxway.policy.bodies import BodyCapture

    store = FakeStore()
    rec = _recorder(store, tmp_path, flush_interval=3600, batch_size=4, max_in_memory=4,
                    bodies=BodyCapture("full"))
    await rec.start()
    for i in range(10):
        await rec.post(_ctx(i), _ok())
    assert rec.spilled == 8 and rec.pending == 10  # two segments of 4 left to their files
    assert rec.spool.pending == 2
    assert await rec.flush() == 10
    statuses = sorted(r["body_status"] for r in store.rows.values())
    assert statuses == ["full"] * 2 + ["lost"] * 8  # the spilled ones held their bodies in memory only
    assert len({r["request_id"] for r in store.rows.values()}) == 10 and rec.pending == 0
    await rec.close()
