"""Stream overhead of ``POST /v1/responses`` against ``POST /v1/chat/completions``.

Runs the gateway in-process (store: SQLite in a temporary folder) in front of a local fake chat
upstream streaming ``CHUNKS`` text chunks, sends ``CALLS`` sequential streamed calls of each shape,
and prints the median and p95 of the gateway's own time (``x-fluxway-overhead-ms``, to the answer's
headers), of the whole call (to the last byte) and the encoders' cost per chunk, measured alone.

    PYTHONPATH=src:. python bench/responses_overhead.py [CALLS] [CHUNKS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import openai_sse, text_stream, usage
from tests.support.replies import sse_reply
from tests.support.upstream import FakeUpstream

from fluxway.canonical import StreamChunk, Usage
from fluxway.ingress.openai import OpenAIStreamEncoder
from fluxway.ingress.responses_request import parse_responses_request
from fluxway.ingress.responses_stream import ResponsesStreamEncoder


def _q(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def _calls(url: str, path: str, body: dict[str, Any], n: int) -> tuple[list[float], list[float]]:
    overhead, total = [], []
    async with aiohttp.ClientSession(headers={"authorization": "Bearer sk-m"}) as s:
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.post(url + path, json=body) as r:
                assert r.status == 200, await r.text()
                await r.read()
                overhead.append(float(r.headers["x-fluxway-overhead-ms"]))
            total.append((time.perf_counter() - t0) * 1000.0)
    return overhead, total


def _encoder_us(chunks: int) -> tuple[float, float]:
    pieces = [StreamChunk({"choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]})
              for _ in range(chunks)]
    call = parse_responses_request(b'{"model": "m", "input": "hi", "stream": true}')
    out = []
    for make in (lambda: OpenAIStreamEncoder(True),
                 lambda: ResponsesStreamEncoder(call, "resp_x", 0, lambda _r: None)):
        t0 = time.perf_counter()
        for _ in range(20):
            enc: Any = make()
            for c in pieces:
                enc.chunk(c)
            enc.finish(Usage(5, chunks))
        out.append((time.perf_counter() - t0) / (20 * chunks) * 1e6)
    return out[0], out[1]


async def main(calls: int, chunks: int) -> None:
    frames = openai_sse(text_stream(["word "] * chunks, tokens=usage(5, chunks), id="c", model="m"))

    async def chat(request: Any) -> Any:
        return await sse_reply(request, frames)

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat)
        cfg = {"auth": {"master_key": "sk-m"},
               "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
               "models": [{"name": "smart", "targets": [{"provider": "up", "model": "m"}]}]}
        async with run_gateway(cfg) as gw:
            shapes = {
                "chat.completions": ("/v1/chat/completions", {"model": "smart", "stream": True,
                                                              "messages": [{"role": "user", "content": "hi"}]}),
                "responses (store)": ("/v1/responses", {"model": "smart", "stream": True, "input": "hi"}),
                "responses (store: false)": ("/v1/responses", {"model": "smart", "stream": True, "input": "hi",
                                                               "store": False}),
            }
            for path, body in shapes.values():  # warm up
                await _calls(gw.url, path, body, 5)
            print(f"{calls} sequential streamed calls of {chunks} chunks each")
            print(f"{'shape':26} {'overhead p50':>13} {'p95':>7} {'call p50':>9} {'p95':>7}  (ms)")
            for name, (path, body) in shapes.items():
                overhead, total = await _calls(gw.url, path, body, calls)
                print(f"{name:26} {statistics.median(overhead):13.3f} {_q(overhead, 0.95):7.3f} "
                      f"{statistics.median(total):9.3f} {_q(total, 0.95):7.3f}")
    chat_us, resp_us = _encoder_us(chunks)
    print(f"encoder per chunk: chat {chat_us:.2f} us, responses {resp_us:.2f} us")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else 50))
