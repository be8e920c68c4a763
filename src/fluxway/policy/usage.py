"""Usage records that are never lost: one per call, through a durable local spool into the store.

The post hook appends the record to the current spool segment with one ``write`` (the bytes are in
the kernel before the hook returns, so a ``kill -9`` of the process cannot lose them) and returns.
A background task then, every ``flush_interval_ms`` or every ``batch_size`` records: rotates the
segment, fsyncs it (a batch per fsync), inserts its records into the store in batches, and deletes it.
At start, segments left by a dead process are replayed; inserts are idempotent on the record id, so
a segment replayed twice yields no duplicate.

Each process holds an ``flock`` on its own segments, so several workers can share a spool directory:
only segments nobody holds are replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fluxway.policy.bodies import DROPPED, LOST, PENDING, BodyCapture
from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit, Slot
from fluxway.policy.pricing import COST, Pricer, call_cost
from fluxway.policy.tags import TAGS
from fluxway.store.quarantine import FILE_NAME as QUARANTINE_FILE
from fluxway.store.quarantine import Quarantine
from fluxway.store.sanitize import sanitize_record
from fluxway.store.usage import PROVISIONAL_STATUS, UsageStore

if TYPE_CHECKING:
    from fluxway.events import EventBus

log = logging.getLogger("fluxway.usage")

RECORD_ID: Slot[str] = Slot("usage.record_id")  # a stream's provisional record id, kept by its final one

Record = dict[str, Any]
_SUFFIX = ".jsonl"
_PRUNE_BATCH = 5000  # minute rollup rows deleted per transaction
_SETTLE_SLICE_S = 0.001  # body masking runs this long at most before letting calls run
# Records per store transaction at most. Each transaction costs a dozen round trips through the
# event loop (a few ms each on a saturated process), so a flush that is behind writes big ones.
_WRITE_CHUNK = 4000


@dataclass
class Segment:
    path: Path
    fd: int  # held open (and flock'ed) until the segment is deleted
    records: list[Record] | None = field(default_factory=list)  # None: read them back from the file
    body_bytes: int = 0  # bytes of body snapshots its in-memory records hold (set when rotated)
    count: int = 0  # records this process appended to it (set when rotated)


def read_segment(path: Path, quarantine: Quarantine | None = None) -> list[Record]:
    """The records of a segment file; a torn or garbled line (a crash mid-write) is quarantined."""
    out: list[Record] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    except OSError as exc:  # unreadable (a directory, no permission): never stops start-up
        log.error("spool %s: cannot be read, skipped: %s", path.name, exc)
        return out
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if quarantine is not None:
                quarantine.line(path.name, line, f"not JSON: {exc}")
            else:
                log.warning("spool %s: skipping an unreadable line (%d bytes)", path.name, len(line))
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            out.append(rec)
        elif quarantine is not None:
            quarantine.line(path.name, line, "not a usage record")
    return out


class Spool:
    """Append-only segment files in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._seq = 0
        self._current: Segment | None = None

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._current is None:
            self._current = self._new_segment()

    def _new_segment(self) -> Segment:
        self._seq += 1
        name = f"usage-{os.getpid()}-{time.time_ns()}-{self._seq}"
        tmp = self.dir / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.dir / (name + _SUFFIX)
        os.rename(tmp, final)  # locked before any replayer can see it
        return Segment(final, fd)

    @property
    def pending(self) -> int:
        seg = self._current
        return len(seg.records) if seg is not None and seg.records is not None else 0

    def append(self, record: Record, memo: Record | None = None) -> None:
        """Write ``record`` to the segment; ``memo`` (fields kept in memory only, never on disk) is
        merged into it once written."""
        seg = self._current
        if seg is None:
            raise RuntimeError("spool is not open")
        try:
            data = orjson.dumps(record) + b"\n"
        except orjson.JSONEncodeError:  # an integer over 64 bits: spool what the store will hold
            record = sanitize_record(record)
            data = orjson.dumps(record) + b"\n"
        try:
            view = memoryview(data)
            while view:
                n = os.write(seg.fd, view)
                view = view[n:]
        except OSError as exc:  # disk full: the record still goes to the store from memory
            log.error("usage spool write failed: %s", exc)
        assert seg.records is not None
        if memo:
            record.update(memo)
        seg.records.append(record)

    def rotate(self) -> Segment | None:
        """Close the current segment (if it holds anything) and start a new one."""
        seg = self._current
        if seg is None or not seg.records:
            return None
        self._current = self._new_segment()
        return seg

    @staticmethod
    def sync(seg: Segment) -> None:
        os.fsync(seg.fd)

    @staticmethod
    def remove(seg: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        os.close(seg.fd)

    def orphans(self) -> list[Segment]:
        """Segments no live process holds (left by a crash), locked for us to replay."""
        out: list[Segment] = []
        mine = self._current.path if self._current else None
        for path in sorted(self.dir.glob("*" + _SUFFIX)):
            if path == mine or path.name == QUARANTINE_FILE:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live process owns it
                continue
            if not path.exists():  # replayed and deleted by someone else meanwhile
                os.close(fd)
                continue
            out.append(Segment(path, fd, None))
        return out

    def close(self) -> None:
        seg = self._current
        self._current = None
        if seg is None:
            return
        if seg.records:
            os.fsync(seg.fd)
            os.close(seg.fd)  # kept on disk: replayed at the next start
        else:
            self.remove(seg)


async def _in_batches(delete: Callable[[int], Awaitable[int]], batch: int) -> int:
    """Call ``delete(batch)`` (one short transaction deleting at most ``batch`` rows) until it
    deletes fewer, pausing between batches so serving and flushing go on. Returns rows deleted."""
    total = 0
    while True:
        n = await delete(batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0.05)


class _Day:
    """The UTC day of a time, memoised until midnight."""

    def __init__(self) -> None:
        self._start = 0.0
        self._label = ""

    def __call__(self, t: float) -> str:
        if not (self._start <= t < self._start + 86400.0):
            self._start = t - t % 86400.0
            self._label = time.strftime("%Y-%m-%d", time.gmtime(t))
        return self._label


def emit_usage(events: EventBus, records: Iterable[Record]) -> None:
    """One ``usage`` event per stored record (a stream's provisional one excluded); its id is the
    record's, so a record stored twice (a replayed spool) is delivered once."""
    for r in records:
        if r.get("status") == PROVISIONAL_STATUS:
            continue
        events.emit("usage", {
            "id": r.get("id"), "request_id": r.get("request_id"), "key": r.get("key_id"), "team": r.get("team"),
            "model": r.get("model"), "provider": r.get("provider"), "upstream_model": r.get("upstream_model"),
            "endpoint": r.get("endpoint"), "status": r.get("status"), "stream": r.get("stream"),
            "prompt_tokens": r.get("prompt_tokens"), "completion_tokens": r.get("completion_tokens"),
            "cached_tokens": r.get("cached_tokens"), "cost_usd": r.get("cost_usd"), "latency_ms": r.get("latency_ms"),
            "ttft_ms": r.get("ttft_ms"), "tags": r.get("tags"), "created_at": r.get("created_at"),
        }, id=f"usage:{r['id']}")


class UsageRecorder:
    """The usage hook: builds one record per call and spools it; a background task stores them."""

    name = "usage"
    before_send = True  # the record is spooled before the client sees the answer's end

    def __init__(
        self,
        store: UsageStore,
        pricer: Pricer,
        spool_dir: str | Path,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        clock: Callable[[], float] = time.time,
        bodies: BodyCapture | None = None,
        retention_days: float | None = None,
        retention_every: float = 600.0,
        retention_batch: int = 500,
        max_in_memory: int = 20000,
        body_backlog_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._store = store
        self.bodies = bodies or BodyCapture("off")
        # With bodies on, a stream's answer is assembled for post (with them off it costs nothing).
        self.wants_response = self.bodies.on
        self._retention_s = retention_days * 86400.0 if retention_days else None
        self._retention_every = retention_every
        self._retention_batch = retention_batch
        self._retention_task: asyncio.Task[None] | None = None
        self.retained = 0  # records deleted by the retention job of this process
        self._pricer = pricer
        self.spool = Spool(spool_dir)
        self.quarantine = Quarantine(spool_dir)
        self._scanned: set[Path] = set()  # segments whose bad lines are quarantined already
        self._interval = flush_interval
        self._batch = batch_size
        self._chunk = max(batch_size, _WRITE_CHUNK)
        # Memory bounds while the flush is behind (a saturated process, a slow store): records
        # past ``max_in_memory`` are left to the spool file (read back when stored, bodies lost);
        # body snapshots past ``body_backlog_bytes`` are not taken (body_status "dropped").
        self._max_in_memory = max(max_in_memory, batch_size)
        self._body_cap = body_backlog_bytes
        self._body_bytes = 0  # snapshot bytes waiting to be settled, all segments
        self._current_body_bytes = 0  # ... of them, in the current segment
        self.bodies_dropped = 0  # records that kept no bodies because of the cap
        self.spilled = 0  # records left to the spool file because of max_in_memory
        self._clock = clock
        self._backlog: list[Segment] = []  # rotated, not yet in the store
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.healthy = True
        self.stored = 0  # records inserted by this process (replays included)
        self._day = _Day()
        self._id_prefix = os.urandom(8).hex()  # record ids: unique per process, then a counter
        self._ids = itertools.count(1)
        self.events: EventBus | None = None  # set when event sinks are configured: one `usage` per record

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        """Open the spool, replay what a dead process left, start flushing. Returns records replayed."""
        await asyncio.to_thread(self.spool.open)
        replayed = await self.replay()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fluxway-usage-flusher")
        prunes = getattr(self._store, "minute_rollups_s", None) is not None
        if (self._retention_s is not None or prunes) and self._retention_task is None:
            self._retention_task = asyncio.create_task(self._retain(), name="fluxway-usage-retention")
        return replayed

    async def replay(self) -> int:
        """Store what dead processes left; with the store unreachable they wait in the backlog
        (the flusher stores them once it is back): a spool never stops start-up."""
        orphans = await asyncio.to_thread(self.spool.orphans)
        total = 0
        async with self._lock:
            for i, seg in enumerate(orphans):
                records = await self._read(seg)
                try:
                    await self._store.insert(records, self._chunk, self.quarantine.record)
                    if self.events is not None:
                        emit_usage(self.events, records)
                except Exception as exc:
                    log.warning("usage spool: %d segments kept for later, the store is unavailable: %s",
                                len(orphans) - i, exc)
                    self.healthy = False
                    self._backlog.extend(orphans[i:])
                    break
                total += len(records)
                self.stored += len(records)
                await asyncio.to_thread(Spool.remove, seg)
        if total:
            log.info("usage spool: replayed %d records left by an earlier run", total)
        return total

    async def _read(self, seg: Segment) -> list[Record]:
        first = seg.path not in self._scanned
        self._scanned.add(seg.path)
        return await asyncio.to_thread(read_segment, seg.path, self.quarantine if first else None)

    async def close(self) -> None:
        """Flush everything (graceful shutdown); what cannot be stored stays spooled for next start."""
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
            self._retention_task = None
        if self._task is not None:
            # Stop the flusher between flushes, never inside one: a cancelled insert leaves the
            # store connection mid-transaction and the final flush below would wait on its lock.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            log.error("usage records not stored at shutdown (kept in the spool for the next start): %s", exc)
        for seg in self._backlog:
            with contextlib.suppress(OSError):
                os.fsync(seg.fd)
                os.close(seg.fd)
        self._backlog.clear()
        self.spool.close()

    # hook ----------------------------------------------------------------------------------

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        return None

    def provisional(self, ctx: CallContext, outcome: Outcome) -> None:
        """A stream has opened: spool a provisional record (status :data:`PROVISIONAL_STATUS`, the
        prompt's tokens) under the id its final record will use, so even a ``kill -9`` mid-stream
        leaves a record of the call; the final one replaces it in the store."""
        rec = self.record(ctx, outcome)
        ctx.pop(COST)  # the final cost is computed from the final usage
        ctx.put(RECORD_ID, rec["id"])
        rec["status"] = PROVISIONAL_STATUS
        rec["error"] = "provisional: stream open (the final record replaces this one)"
        self.spool.append(rec)

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        rec = self.record(ctx, outcome)
        if not self.bodies.on:
            rec["body_status"] = "off"
            self.spool.append(rec)
        elif self._body_bytes >= self._body_cap:
            rec["body_status"] = DROPPED
            self.bodies_dropped += 1
            self.spool.append(rec)
        else:
            # On disk the record says its bodies are lost (true if it is ever read back from
            # there); in memory it holds their snapshot, settled by the flush.
            rec["body_status"] = LOST
            snap = self.bodies.snapshot(ctx, outcome)
            size = BodyCapture.size(snap)
            self._body_bytes += size
            self._current_body_bytes += size
            self.spool.append(rec, {PENDING: snap})
        pending = self.spool.pending
        if pending >= self._batch:
            self._wake.set()
            if pending >= self._max_in_memory:
                self._spill()

    def record_tool_call(
        self,
        *,
        request_id: str,
        principal: Principal | None,
        tool: str,
        server: str | None,
        status: int,
        latency_ms: float,
        error: str | None,
    ) -> Record:
        """Spool the record of one MCP tool call (endpoint ``mcp``; ``model`` is the tool's
        ``<server>.<tool>`` name, ``provider`` its server): /admin/logs and the usage reports show
        it beside the inference calls. No tokens, no cost, no bodies."""
        now = self._clock()
        rec: Record = {
            "id": f"{self._id_prefix}{next(self._ids):x}", "request_id": request_id, "created_at": now,
            "day": self._day(now), "key_id": principal.id if principal is not None else None,
            "team": principal.team if principal is not None else None, "endpoint": "mcp", "model": tool[:256],
            "provider": server, "upstream_model": None, "status": status, "stream": False, "prompt_tokens": 0,
            "completion_tokens": 0, "cached_tokens": 0, "cost_usd": 0.0, "price_known": True,
            "estimated": False, "latency_ms": round(latency_ms, 3), "ttft_ms": None, "attempts": 1,
            "cache": "off", "error": error[:1000] if error is not None else None, "tags": None,
            "body_status": "off",
        }
        self.spool.append(rec)
        if self.spool.pending >= self._batch:
            self._wake.set()
        return rec

    @property
    def pending(self) -> int:
        """Records spooled by this process that are not in the store yet."""
        return self.spool.pending + sum(seg.count for seg in self._backlog)

    def _rotate(self) -> Segment | None:
        seg = self.spool.rotate()
        if seg is not None:
            seg.body_bytes = self._current_body_bytes
            seg.count = len(seg.records or ())
            self._current_body_bytes = 0
        return seg

    def _release(self, seg: Segment) -> None:
        """The segment's body snapshots are settled or gone: they no longer count against the cap."""
        self._body_bytes -= seg.body_bytes
        seg.body_bytes = 0

    def _spill(self) -> None:
        """The flush is this far behind: leave the current segment's records to its file (read
        back when they are stored) so that memory stays bounded."""
        seg = self._rotate()
        if seg is None:
            return
        self.spilled += seg.count
        seg.records = None
        self._release(seg)
        self._backlog.append(seg)
        log.warning("usage records: the store is %d records behind; the rest are read back from the spool",
                    self._max_in_memory)

    def record(self, ctx: CallContext, outcome: Outcome) -> Record:
        cost = call_cost(self._pricer, ctx, outcome)
        usage = cost.usage
        p = ctx.principal
        target = outcome.target
        now = self._clock()
        err = outcome.error
        error = err.message[:1000] if err is not None else None
        partial = ctx.partial
        if partial is not None:  # a stream that ended early: what was delivered, marked as such
            error = f"partial: {partial}" + (f" ({error})" if error else "")
        return {
            "id": ctx.get(RECORD_ID) or f"{self._id_prefix}{next(self._ids):x}",
            "request_id": ctx.request_id,
            "created_at": now,
            "day": self._day(now),
            "key_id": p.id if p is not None else None,
            "team": p.team if p is not None else None,
            "endpoint": ctx.request.endpoint.value,
            "model": ctx.request.model,
            "provider": target.provider if target is not None else None,
            "upstream_model": target.model if target is not None else None,
            "status": outcome.status,
            "stream": ctx.request.stream,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "cost_usd": cost.usd,
            "price_known": cost.known,
            "estimated": cost.estimated,
            "latency_ms": round(outcome.latency_ms, 3),
            "ttft_ms": None if outcome.ttft_ms is None else round(outcome.ttft_ms, 3),
            "attempts": outcome.attempts,
            "cache": outcome.cache,
            "error": error[:1000] if error is not None else None,
            "tags": ctx.get(TAGS),
        }

    # flushing ------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Store everything spooled so far; returns the records stored."""
        async with self._lock:
            seg = self._rotate()
            if seg is not None:
                self._backlog.append(seg)
            stored = 0
            while self._backlog:
                seg = self._backlog[0]
                records = seg.records
                if records is None:
                    records = await self._read(seg)
                else:
                    await self._settle_bodies(records)
                    self._release(seg)
                try:
                    await asyncio.to_thread(Spool.sync, seg)
                    await self._store.insert(records, self._chunk, self.quarantine.record)
                except Exception:
                    seg.records = None  # on disk; read back on the next try instead of holding memory
                    self._release(seg)
                    self.healthy = False
                    raise
                self.healthy = True
                if self.events is not None:
                    emit_usage(self.events, records)
                self._backlog.pop(0)
                self._scanned.discard(seg.path)
                stored += len(records)
                self.stored += len(records)
                await asyncio.to_thread(Spool.remove, seg)
            return stored

    async def _settle_bodies(self, records: list[Record]) -> None:
        """Mask and cap the bodies of records spooled by this process, in slices of about a
        millisecond with calls running between them."""
        if not self.bodies.on:
            return
        settle = self.bodies.settle
        clock = time.perf_counter
        until = clock() + _SETTLE_SLICE_S
        for rec in records:
            if PENDING in rec:
                settle(rec)  # ~30 µs for a small call's bodies, a few ms for two capped ones
                if clock() >= until:
                    await asyncio.sleep(0)
                    until = clock() + _SETTLE_SLICE_S

    # retention -----------------------------------------------------------------------------

    async def enforce_retention(self) -> int:
        """Delete the records older than ``retention_days``, in small batches with pauses between
        them (each batch a short transaction: serving and flushing go on). Returns records deleted."""
        if self._retention_s is None:
            return 0
        cutoff = self._clock() - self._retention_s
        total = await _in_batches(lambda n: self._store.delete_before(cutoff, n), self._retention_batch)
        self.retained += total
        if total:
            log.info("usage retention: deleted %d records older than %s days", total, self._retention_s / 86400.0)
        return total

    async def prune_rollups(self) -> int:
        """Delete the minute rollups older than ``usage.minute_rollups_hours`` (hour and day rows
        stay), in batches like the records. Returns rows deleted."""
        keep = getattr(self._store, "minute_rollups_s", None)
        if keep is None:
            return 0
        cutoff = self._clock() - keep
        return await _in_batches(lambda n: self._store.prune_minute_rollups(cutoff, n), _PRUNE_BATCH)

    async def _retain(self) -> None:
        while True:
            try:
                await self.enforce_retention()
                await self.prune_rollups()
            except Exception as exc:  # the store down: try again next round
                log.warning("usage retention not applied yet: %s", exc)
            await asyncio.sleep(self._retention_every)

    async def _run(self) -> None:
        delay = self._interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
                delay = self._interval
            except Exception as exc:
                delay = min(max(delay * 2, self._interval), 10.0)
                log.warning("usage records not stored yet (retrying in %.1fs): %s", delay, exc)
