"""Property (issue 9, "also found"): no body sent to an inference endpoint, however malformed, gets a
500 or a dropped connection — with the master key and with a virtual key.

Examples per property: ``FLUXWAY_FUZZ_EXAMPLES`` (150 by default; ``scripts/fuzz.sh`` runs thousands).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.background import in_background
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import embeddings, text_completion
from tests.support.openai_upstream import openai_upstream
from tests.support.replies import replying

MASTER = "sk-master-fuzz"
EXAMPLES = int(os.environ.get("FLUXWAY_FUZZ_EXAMPLES", "150"))
ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
             # the pass-through surface (issue 11)
             "/v1/images/generations", "/v1/audio/speech", "/v1/rerank", "/v1/batches", "/v1/files",
             "/v1/audio/transcriptions"]


@dataclass
class Target:
    host: str
    port: int
    keys: tuple[str, ...]


@asynccontextmanager
async def _stack(tmp: str) -> AsyncIterator[Target]:
    async with openai_upstream() as up:
        up.route("POST", "/v1/completions", replying(text_completion("ok", model="gpt-4o-mini")))
        up.route("POST", "/v1/embeddings", replying(embeddings(1, [0.1, 0.2], prompt=2)))
        cfg = {
            "auth": {"master_key": MASTER},
            "store": {"url": f"sqlite:///{tmp}/fluxway.db"},
            "usage": {"spool_dir": f"{tmp}/spool"},
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
            "models": [
                {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}], "fallbacks": ["other"]},
                {"name": "other", "targets": [{"provider": "up", "model": "gpt-4o"}]},
                {"name": "embed", "targets": [{"provider": "up", "model": "text-embedding-3-small"}]},
            ],
        }
        async with run_gateway(cfg) as gw, aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s:
            async with s.post(gw.url + "/admin/keys", json={
                "name": "fuzz", "models": ["smart", "embed", "up/*"], "rpm": 100000,
                "budget": {"amount_usd": 1000.0, "period": "monthly"},
            }) as r:
                assert r.status == 201, await r.text()
                virtual = (await r.json())["key"]
            host, port = gw.url.removeprefix("http://").split(":")
            yield Target(host, int(port), (MASTER, virtual))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    with in_background(lambda: _stack(tmp)) as target:
        yield target


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
MODELS = st.sampled_from(["smart", "embed", "other", "up/gpt-4o-mini", "up/a\u0001b", "up/x?y#z", "up/../../v1",
                          "nope", "", "up/", "/x", "smart\u0000"]) | st.text(max_size=300)
ROLES = st.sampled_from(["user", "assistant", "system", "tool", "developer", "function"]) | JSON
MESSAGE = st.fixed_dictionaries(
    {"role": ROLES},
    optional={"content": st.text(max_size=20) | JSON, "name": JSON, "tool_calls": JSON, "tool_call_id": JSON},
)
FIELDS: dict[str, Any] = {
    "model": MODELS | JSON,
    "messages": st.lists(MESSAGE, max_size=3) | JSON,
    "stream": st.booleans() | JSON,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | JSON}) | JSON,
    "max_tokens": st.integers(min_value=-5, max_value=2**70) | JSON,
    "max_completion_tokens": st.integers() | JSON,
    "temperature": st.floats() | JSON,
    "top_p": st.floats() | JSON,
    "n": st.integers(min_value=-2, max_value=2**40) | JSON,
    "stop": JSON,
    "tools": JSON,
    "tool_choice": JSON,
    "response_format": JSON,
    "input": st.text(max_size=20) | JSON,
    "prompt": st.text(max_size=20) | JSON,
    "system": JSON,
    "metadata": JSON,
    "user": JSON,
}
STRUCTURED = st.fixed_dictionaries({}, optional=FIELDS)
def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # stdlib: big integers and NaN go out as a client might send them


BODIES = STRUCTURED.map(_encode) | JSON.map(_encode) | st.binary(max_size=64)


def _send(target: Target, path: str, key: str, body: bytes, extra: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=30)
    try:
        headers = {"authorization": f"Bearer {key}", "x-api-key": key, "anthropic-version": "2023-06-01",
                   "content-type": "application/json", **extra}
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()  # a dropped connection raises here: the property fails
        return resp.status, resp.read()
    finally:
        conn.close()


EXTRA_HEADERS = st.fixed_dictionaries({}, optional={
    "x-request-id": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=200),
    "content-type": st.sampled_from(["text/plain", "application/json; charset=latin-1", ""]),
})


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@given(path=st.sampled_from(ENDPOINTS), key_index=st.integers(0, 1), body=BODIES, extra=EXTRA_HEADERS)
def test_no_body_gets_a_500_or_a_dropped_connection(
    gateway: Target, path: str, key_index: int, body: bytes, extra: dict[str, str]
) -> None:
    status, payload = _send(gateway, path, gateway.keys[key_index], body, extra)
    assert status < 500 or status in (502, 503, 504), (status, payload[:500])
    if status >= 400:
        err = orjson.loads(payload)  # an error is always a JSON body in the caller's shape
        if path == "/v1/messages":
            assert err["type"] == "error" and isinstance(err["error"]["message"], str), err
        else:
            assert isinstance(err["error"]["message"], str), err
