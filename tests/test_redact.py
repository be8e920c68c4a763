"""Upstream error text never carries secrets to the client, the log or /admin/logs (issue 9 #10).

The mock upstream echoes what it was sent (the provider key, long or one character) and some
key-shaped strings in its error messages and bodies, the way real providers echo a wrong key.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fluxway.redact import Redactor
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import error
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-redact"
LONG_KEY = "prov-long-secret-0123456789"
SHORT_KEY = "q"
HI = [{"role": "user", "content": "Hi"}]
FOREIGN = "sk-proj-AbCdEf0123456789xyz"  # key-shaped, not configured
AWS_ID = "AKIAIOSFODNN7EXAMPLE"


def leaks(text: str) -> list[str]:
    return [s for s in (LONG_KEY, FOREIGN, AWS_ID, "Bearer " + SHORT_KEY, f"provided: {SHORT_KEY}.") if s in text]


async def echo(request: web.Request) -> web.StreamResponse:
    """Echo the key this request was signed with: 400, 401, 500 and streams alike."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    body = await request.json()
    mode = body["messages"][0]["content"]
    message = (
        f"Incorrect API key provided: {key}. Sent with Authorization: Bearer {key}; "
        f"also saw {FOREIGN} and {AWS_ID}; ?key={key}&alt=json"
    )
    status = {"bad": 400, "auth": 401, "boom": 500}[mode]
    echoed = error(message, "invalid_request_error", param="messages", code="invalid_api_key", api_key=key,
                   echo={"authorization": f"Bearer {key}"})
    return json_reply(echoed, status=status)


def config(url: str, tmp_path: Path, key: str) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": [key]}],
        "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o-mini"}], "retry": {"attempts": 1}}],
    }


async def call(base: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {MASTER}", "x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as s, s.post(base + path, data=orjson.dumps(body), headers=headers) as r:
        return r.status, (await r.read()).decode()


@pytest.mark.parametrize("key", [LONG_KEY, SHORT_KEY])
async def test_an_upstream_echoing_the_provider_key_never_leaks_it(
    key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", echo)
        async with run_gateway(config(up.url, tmp_path, key)) as gw:
            seen: list[str] = []
            for mode, stream in (("bad", False), ("auth", False), ("boom", False), ("boom", True), ("auth", True)):
                status, text = await call(
                    gw.url, "/v1/chat/completions",
                    {"model": "m", "messages": [{"role": "user", "content": mode}], "stream": stream},
                )
                assert status in (400, 502), text
                seen.append(text)
                status, text = await call(
                    gw.url, "/v1/messages",
                    {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": mode}],
                     "stream": stream},
                )
                assert status in (400, 502), text
                seen.append(text)
            # the upstream really did echo the key: the redaction is what kept it out
            assert all(f"provided: {key}" not in t and "[REDACTED]" in t for t in seen), seen
            for text in seen:
                assert leaks(text) == [], text
            logs: list[Any] = []
            async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s:
                for _ in range(100):
                    async with s.get(gw.url + "/admin/logs", params={"limit": 100}) as r:
                        logs = (await r.json())["data"]
                    if len(logs) >= len(seen):
                        break
                    await asyncio.sleep(0.05)
            assert len(logs) >= len(seen)
            dumped = orjson.dumps(logs).decode()
            assert "[REDACTED]" in dumped and leaks(dumped) == [], dumped
        assert len(up.requests) == len(seen)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "[REDACTED]" in logged
    assert leaks(logged) == [], logged


def test_redactor_masks_configured_and_key_shaped_secrets() -> None:
    r = Redactor(["k", "prov-long-secret-0123456789"])
    assert r.text("key provided: k.") == "key provided: [REDACTED]."
    assert r.text("keyword k") == "keyword [REDACTED]"
    assert r.text("xprov-long-secret-0123456789x") == "x[REDACTED]x"
    assert r.text(f"{FOREIGN} {AWS_ID} AIzaSyA1234567890abcdefghijklmnopqrstu") == "[REDACTED] [REDACTED] [REDACTED]"
    assert r.text("Authorization: Bearer abc.def.ghi") == "Authorization: [REDACTED] [REDACTED]"
    assert r.text('x-api-key: "zzz" token=abc') == 'x-api-key: "[REDACTED]" token=[REDACTED]'
    assert r.text("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end") == "secret [REDACTED] end"
    # ordinary upstream text survives
    for text in ("model anthropic.claude-3-5-haiku-20241022-v1:0 not found", "gpt-4o is overloaded",
                 "This model's maximum context length is 128000 tokens"):
        assert r.text(text) == text
    assert r.value({"error": {"message": "k", "api_key": "plain", "n": 3}}) == {
        "error": {"message": "[REDACTED]", "api_key": "[REDACTED]", "n": 3}
    }


# The fast path (substring checks before the patterns run) must mask exactly what the patterns do.
_FRAGMENTS = (
    LONG_KEY, SHORT_KEY, FOREIGN, AWS_ID, "ASIAABCDEFGHIJKLMNOP", "AIzaSyA-0123456789abcdefghijkl",
    "Bearer abc.def-123",
    "bearer tok_123456", "api_key=", "x-api-key: ", '"token": "', "password=hunter2", "Secret_Access_Key = ",
    "signature=abc", "authorization:", "credential='x'", "max_tokens", '"prompt_tokens":20', "key", "keys=1",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "A" * 40, "abcdefghijklmnopqrstuvwxyz0123456789", "sk-", "é", " ",
    '"', "'", ":", "=", "&", ",", "}", "{", "\n", "Hello there", "0123456789",
)


def _reference(redactor: Redactor, text: str) -> str:
    from fluxway import redact

    text = redactor._pattern.sub(redact.MASK, text)
    return redact._PAIR.sub(lambda m: m.group(1) + redact.MASK if m.group(2) != redact.MASK else m.group(0), text)


def test_fast_path_masks_what_the_patterns_mask() -> None:
    import random

    rng = random.Random(7)
    redactor = Redactor([LONG_KEY, SHORT_KEY])
    for _ in range(3000):
        text = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 12)))
        assert redactor.text(text) == _reference(redactor, text), text
