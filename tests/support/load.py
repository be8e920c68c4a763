"""Batches of client chat requests through the gateway, and what they saw."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import orjson


class Load:
    """What a batch of client requests saw."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.providers: Counter[str] = Counter()
        self.texts: Counter[str] = Counter()
        self.attempts: Counter[int] = Counter()

    @property
    def ok(self) -> int:
        return sum(self.providers.values())


async def run_load(
    client: Any,
    n: int = 200,
    *,
    concurrency: int = 32,
    stream: bool = False,
    model: str = "m",
    content: str = "Hi",
) -> Load:
    """``n`` chat requests through the openai SDK ``client``, at most ``concurrency`` at once.

    Errors are collected, not raised; a stream counts as an error if it raises before its end.
    """
    out = Load()
    sem = asyncio.Semaphore(concurrency)
    messages = [{"role": "user", "content": content}]

    async def one() -> None:
        async with sem:
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=model, messages=messages, stream=stream
                )
                if stream:
                    text = ""
                    async for c in raw.parse():
                        if c.choices:
                            text += c.choices[0].delta.content or ""
                else:
                    text = raw.parse().choices[0].message.content or ""
            except Exception as exc:  # every failure is what the test counts
                out.errors.append(exc)
                return
            out.providers[raw.headers.get("x-fluxway-provider", "?")] += 1
            out.attempts[int(raw.headers.get("x-fluxway-attempts", "0"))] += 1
            out.texts[text] += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return out


async def run_raw_load(url: str, n: int, *, concurrency: int = 32, model: str = "m") -> Load:
    """Like :func:`run_load` with plain aiohttp JSON requests to ``url`` (the gateway's base URL):
    several times cheaper than the SDK, for counting where many requests land."""
    out = Load()
    sem = asyncio.Semaphore(concurrency)
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as http:

        async def one() -> None:
            async with sem, http.post(url + "/v1/chat/completions", json=body) as resp:
                data = await resp.read()
                if resp.status != 200:
                    out.errors.append(RuntimeError(f"{resp.status}: {data[:200]!r}"))
                    return
                out.providers[resp.headers.get("x-fluxway-provider", "?")] += 1
                out.attempts[int(resp.headers.get("x-fluxway-attempts", "0"))] += 1
                out.texts[orjson.loads(data)["choices"][0]["message"]["content"]] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return out
