"""Benchmark: ``/admin/usage`` on a store holding N usage records (default 1,000,000).

    python bench/usage_rollups.py [--records N] [--db sqlite|postgresql]

Records (30 days, 200 keys in 20 teams, 12 models, 4 providers, 5 statuses, 0-2 of 8 tags) go
straight into ``usage_records`` in bulk, their rollups through the same code the store's insert
uses (:func:`fluxway.store.rollups.deltas` and the additive upsert). Then every grouping is asked
through the admin API (HTTP over ASGI, the master key), over the whole range, an unaligned last
7 days and an unaligned last 24 hours; each query 5 times, the median and the worst reported.
PostgreSQL needs ``FLUXWAY_TEST_POSTGRES_URL``. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import sqlalchemy as sa

from fluxway.config import parse
from fluxway.policy.governance import build_governance
from fluxway.store import Store
from fluxway.store.rollups import deltas, upsert
from fluxway.store.tables import usage_records
from fluxway.store.usage_report import GROUPS

MASTER = "sk-bench"
NOW = 1_780_000_000.0
SPAN = 30 * 86400.0
CHUNK = 20_000


def records(n: int, seed: int = 7) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    models = [f"model-{i}" for i in range(12)]
    providers = ["openai", "anthropic", "bedrock", "gemini"]
    tags = ["prod", "staging", "batch", "chat", "rag", "eval", "team:a", "team:b"]
    statuses = [200] * 90 + [429] * 4 + [500] * 2 + [502] * 2 + [400] * 2
    out = []
    for i in range(n):
        t = NOW - SPAN + (SPAN * i) / n
        key = rnd.randrange(200)
        status = rnd.choice(statuses)
        k = rnd.randrange(3)
        out.append({
            "id": f"b{i:012x}", "request_id": f"req-{i}", "created_at": t,
            "day": time.strftime("%Y-%m-%d", time.gmtime(t)), "key_id": f"key-{key}", "team": f"team-{key % 20}",
            "endpoint": "chat", "model": rnd.choice(models), "provider": rnd.choice(providers),
            "upstream_model": "m", "status": status, "stream": False,
            "prompt_tokens": rnd.randrange(2000), "completion_tokens": rnd.randrange(800), "cached_tokens": 0,
            "cost_usd": rnd.random() / 100, "price_known": True, "estimated": False,
            "latency_ms": rnd.uniform(50, 3000), "ttft_ms": None, "attempts": 1, "cache": "off",
            "error": None if status < 400 else "upstream error",
            "tags": ",".join(rnd.sample(tags, k)) or None,
        })
    return out


async def fill(store: Store, n: int) -> float:
    started = time.perf_counter()
    cols = set(usage_records.c.keys())
    for i in range(0, n, CHUNK):
        batch = [{k: v for k, v in r.items() if k in cols} for r in records(min(CHUNK, n - i), seed=i)]
        for j, r in enumerate(batch):  # ids and times continue across chunks
            r["id"] = f"b{i + j:012x}"
            r["created_at"] = NOW - SPAN + SPAN * (i + j) / n
            r["day"] = time.strftime("%Y-%m-%d", time.gmtime(float(r["created_at"])))  # type: ignore[arg-type]
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(usage_records), batch)
            await upsert(conn, deltas(batch))
    return time.perf_counter() - started


async def measure(db: str, url: str, n: int) -> dict[str, object]:
    store = Store.open(url)
    await store.upgrade()
    async with store.engine.connect() as conn:
        have = (await conn.execute(sa.select(sa.func.count()).select_from(usage_records))).scalar_one()
    fill_s: float | None = None  # None: the store held the records already (an earlier run filled it)
    if have != n:
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM usage_records"))
            await conn.execute(sa.text("DELETE FROM usage_rollups"))
        fill_s = await fill(store, n)
    async with store.engine.connect() as conn:
        rollup_rows = (await conn.execute(sa.text("SELECT count(*) FROM usage_rollups"))).scalar_one()
    await store.close()
    spool = tempfile.mkdtemp(prefix="fluxway-bench-spool-")
    cfg = parse({"auth": {"master_key": MASTER}, "store": {"url": url},
                 "usage": {"spool_dir": spool, "flush_interval_ms": 1000},
                 "providers": [{"name": "oai", "type": "openai", "api_keys": ["k"]}],
                 "models": [{"name": "m", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}]})
    gov = await build_governance(cfg, clock=lambda: NOW)
    await gov.start()
    ranges = {"all": {}, "7d": {"since": NOW - 7 * 86400 - 1234.5, "until": NOW - 17.25},
              "24h": {"since": NOW - 86400 - 77.5, "until": NOW - 3.5}}
    timings: dict[str, dict[str, float]] = {}
    try:
        transport = httpx.ASGITransport(app=gov.admin_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin",
                                     headers={"authorization": f"Bearer {MASTER}"}) as client:
            t = time.perf_counter()  # the first query opens the pool and reads the pages in: told apart
            await client.get("/admin/usage", params={"group_by": "key"})
            first_ms = round((time.perf_counter() - t) * 1000, 2)
            for group in GROUPS:
                for rname, params in ranges.items():
                    ms = []
                    for _ in range(5):
                        t = time.perf_counter()
                        r = await client.get("/admin/usage", params={"group_by": group, **params})
                        ms.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, r.text
                    timings[f"{group}/{rname}"] = {"median_ms": round(statistics.median(ms), 2),
                                                   "max_ms": round(max(ms), 2), "groups": len(r.json()["data"])}
                    print(f"{db:10} {group:8} {rname:4} median {statistics.median(ms):7.2f} ms  "
                          f"max {max(ms):7.2f} ms  ({len(r.json()['data'])} groups)", flush=True)
    finally:
        await gov.close()
    worst = max(v["max_ms"] for v in timings.values())
    return {"db": db, "records": n, "rollup_rows": rollup_rows, "fill_s": None if fill_s is None else round(fill_s, 1),
            "first_query_ms": first_ms, "worst_ms": worst, "under_200ms": worst < 200, "queries": timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--sqlite-path", default=str(Path(tempfile.gettempdir()) / "fluxway-bench-usage.db"))
    args = ap.parse_args()
    if args.db == "sqlite":
        url = f"sqlite:///{args.sqlite_path}"
    else:
        url = os.environ.get("FLUXWAY_TEST_POSTGRES_URL", "")
        if not url:
            raise SystemExit("set FLUXWAY_TEST_POSTGRES_URL")
    result = asyncio.run(measure(args.db, url, args.records))
    out = Path(__file__).parent / "results" / f"usage_rollups_{args.db}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.db}: {result['records']} records, {result['rollup_rows']} rollup rows, fill {result['fill_s']} s, "
          f"worst query {result['worst_ms']} ms -> {out}")


if __name__ == "__main__":
    main()
