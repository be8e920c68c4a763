"""Probe (issue 9 #5): statuses a budgeted, rate-limited key sees while Redis is killed, then restarted empty.

    PYTHONPATH=src python bench/redis_outage.py [--policy open|closed|default] [--concurrency 32] [--phase-s 3]

Runs the real gateway in-process against a mock upstream and a private redis-server (killed with
SIGKILL, then restarted with nothing in it), keeps ``--concurrency`` callers busy through three
phases (Redis up, Redis down, Redis back empty) and prints the statuses of each phase as JSON.
``--hang`` stops the server with SIGSTOP (every call to it hangs) and resumes it instead.
``--policy default`` leaves ``redis.on_failure`` out of the config (to probe a version without it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.gateway import run_gateway
from tests.support.redis_server import private_redis
from tests.support.upstream import FakeUpstream, json_reply

MASTER = "sk-master-probe"
COMPLETION = {
    "id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


async def probe(policy: str, concurrency: int, phase_s: float, hang: bool = False) -> dict[str, Any]:
    async def chat(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.005)
        return json_reply(COMPLETION)

    tmp = tempfile.mkdtemp(prefix="fluxway-probe-")
    with private_redis() as server:
        async with FakeUpstream() as up:
            up.route("POST", "/v1/chat/completions", chat)
            redis: dict[str, Any] = {"url": server.url}
            if policy != "default":
                redis["on_failure"] = policy
            cfg = {
                "auth": {"master_key": MASTER},
                "store": {"url": f"sqlite:///{tmp}/fluxway.db"},
                "usage": {"spool_dir": f"{tmp}/spool"},
                "redis": redis,
                "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
                "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini",
                                                          "price": {"input_per_mtok": 1, "output_per_mtok": 1}}]}],
            }
            async with run_gateway(cfg) as gw, aiohttp.ClientSession() as s:
                async with s.post(gw.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                                  json={"name": "p", "rpm": 1_000_000,
                                        "budget": {"amount_usd": 1000, "period": "monthly"}}) as r:
                    key = (await r.json())["key"]
                phase = "redis up"
                seen: dict[str, Counter[int]] = {}
                stop = False

                async def worker() -> None:
                    while not stop:
                        try:
                            async with s.post(gw.url + "/v1/chat/completions",
                                              headers={"authorization": f"Bearer {key}"},
                                              json={"model": "smart", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "hi"}]}) as r:
                                await r.read()
                                seen.setdefault(phase, Counter())[r.status] += 1
                        except aiohttp.ClientError:
                            seen.setdefault(phase, Counter())[0] += 1  # no answer at all

                workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
                await asyncio.sleep(phase_s)
                phase = "redis down"
                t0 = time.monotonic()
                if hang:
                    server.pause()
                else:
                    server.kill()
                await asyncio.sleep(phase_s)
                phase = "redis resumed" if hang else "redis back empty"
                if hang:
                    server.resume()
                else:
                    server.start()
                await asyncio.sleep(phase_s)
                stop = True
                await asyncio.gather(*workers)
                async with s.get(gw.url + "/metrics") as r:
                    metrics = [ln for ln in (await r.text()).splitlines() if ln.startswith("fluxway_redis")]
                down_s = time.monotonic() - t0
    return {
        "policy": policy,
        "concurrency": concurrency,
        "phase_s": phase_s,
        "outage_s": round(down_s - phase_s, 2) if down_s > phase_s else None,
        "statuses": {p: dict(sorted(c.items())) for p, c in seen.items()},
        "metrics": metrics,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--policy", choices=["open", "closed", "default"], default="open")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--phase-s", type=float, default=3.0)
    ap.add_argument("--hang", action="store_true", help="SIGSTOP Redis (it hangs) instead of killing it, then SIGCONT")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(probe(args.policy, args.concurrency, args.phase_s, args.hang)), indent=2))


if __name__ == "__main__":
    main()
