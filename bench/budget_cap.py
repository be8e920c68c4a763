"""Probe (issue 10): budget capping under waves of 200 concurrent calls, on 1 and 3 instances.

    PYTHONPATH=src python bench/budget_cap.py --redis URL --postgres URL [--out bench/results/budget-cap-<date>.json]

Runs the scenario of tests/policy/test_budget_cap_instances_e2e.py (calls without ``max_tokens``
against an upstream that uses every token it is allowed; $1 budget) on one instance (memory ledger,
SQLite) and on three sharing PostgreSQL and Redis, and prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.policy.test_budget_cap_instances_e2e import run_scenario
from tests.store import dbs


async def main(redis: str, postgres: str) -> list[dict[str, Any]]:
    out = []
    with TemporaryDirectory() as tmp:
        out.append(asdict(await run_scenario(1, f"sqlite:///{tmp}/fluxway.db", None)))
    for instances in (1, 3):
        url = await dbs.fresh_postgres_db(postgres)
        try:
            out.append(asdict(await run_scenario(instances, url, redis)))
        finally:
            await dbs.drop_postgres_db(postgres, url)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True, help="a Redis URL whose database may be used (not flushed)")
    ap.add_argument("--postgres", required=True, help="a PostgreSQL URL whose role may CREATE DATABASE")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    figures = asyncio.run(main(args.redis, args.postgres))
    text = json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": figures}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
