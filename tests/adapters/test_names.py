"""Model and deployment names never change the upstream URL (issue 9 #2), through HTTP.

A hostile client names models directly (``<provider>/<model>``) with ``?``, ``#``, ``..``, ``/``
and control characters; the mock upstream records the raw path it was asked for. Either the
gateway answers 400 ``invalid_model`` (param ``model``) in the caller's shape and the upstream saw
nothing, or the name went out percent-encoded inside its own path segment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.gateway import run_gateway
from tests.support.replies import replying
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-names"
HI = [{"role": "user", "content": "Hi"}]
GEMINI_OK = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
}
AZURE_OK = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
BEDROCK_OK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
}


def raw_upstream(reply: dict[str, Any]) -> FakeUpstream:
    """Answers every request with ``reply``; ``seen(up)`` is the raw (still encoded) request targets."""
    return FakeUpstream(replying(reply))


def seen(up: FakeUpstream) -> list[str]:
    return [r.raw_path for r in up.requests]


def providers(url: str) -> list[dict[str, Any]]:
    return [
        {"name": "gemini", "type": "gemini", "base_url": url, "api_keys": ["g-key"]},
        {"name": "az", "type": "azure", "base_url": url, "api_keys": ["az-key"]},
        {"name": "br", "type": "bedrock", "base_url": url, "region": "us-east-1",
         "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"},
    ]


async def post(url: str, path: str, body: dict[str, Any], key: str = MASTER) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}", "x-api-key": key, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as s, s.post(url + path, data=orjson.dumps(body), headers=headers) as r:
        return r.status, await r.json(content_type=None)


HOSTILE = [
    "gemini/x?key=evil&alt=json#",
    "gemini/gemini-1.5-flash/../../../v1/models/gemini-ultra",
    "gemini/../models/gemini-ultra",
    "gemini/models/gemini-1.5-flash/../gemini-ultra",
    "gemini/gemini-1.5-flash:generateContent?x=",
    "gemini/gemini 1.5",
    "gemini/a\u0001b",
    "gemini/a%2F..%2Fb",
    "gemini/v1/models/gemini-ultra",
    "az/dep/../../other",
    "az/dep?api-version=evil",
    "az/..",
    "az/dep#x",
    "az/dep\tx",
    "br/anthropic.claude/../../other",
    "br/x?y",
    "br/a\nb",
]


@pytest.mark.parametrize("model", HOSTILE)
async def test_hostile_names_are_400_before_any_upstream_call(model: str, tmp_path: Path) -> None:
    async with raw_upstream(GEMINI_OK) as up:
        cfg = {"auth": {"master_key": MASTER}, "providers": providers(up.url), "models": []}
        async with run_gateway(cfg) as gw:
            status, body = await post(gw.url, "/v1/chat/completions", {"model": model, "messages": HI})
            assert status == 400, body
            assert body["error"]["code"] == "invalid_model" and body["error"]["param"] == "model"
            # the Anthropic shape on /v1/messages
            status, body = await post(gw.url, "/v1/messages", {"model": model, "max_tokens": 5, "messages": HI})
            assert status == 400, body
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            assert "invalid model name" in body["error"]["message"]
        assert seen(up) == []


@pytest.mark.parametrize(
    ("model", "reply", "path"),
    [
        ("gemini/gemini-1.5-flash", GEMINI_OK, "/v1beta/models/gemini-1.5-flash:generateContent"),
        ("gemini/models/gemini-1.5-flash", GEMINI_OK, "/v1beta/models/gemini-1.5-flash:generateContent"),
        ("gemini/tunedModels/my-model-1", GEMINI_OK, "/v1beta/tunedModels/my-model-1:generateContent"),
        ("gemini/x:y", GEMINI_OK, "/v1beta/models/x%3Ay:generateContent"),
        ("az/gpt-4o.prod_1", AZURE_OK, "/openai/deployments/gpt-4o.prod_1/chat/completions?api-version=2024-10-21"),
        # As botocore sends {modelId}: ':' as %3A, '/' (inference-profile ARNs) as %2F.
        ("br/anthropic.claude-3-5-haiku-20241022-v1:0", BEDROCK_OK,
         "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"),
        ("br/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0", BEDROCK_OK,
         "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-v1%3A0"
         "/converse"),
    ],
)
async def test_names_go_out_percent_encoded_in_their_own_segment(
    model: str, reply: dict[str, Any], path: str
) -> None:
    async with raw_upstream(reply) as up:
        cfg = {"auth": {"master_key": MASTER}, "providers": providers(up.url), "models": []}
        async with run_gateway(cfg) as gw:
            status, body = await post(gw.url, "/v1/chat/completions", {"model": model, "messages": HI})
            assert status == 200, body
        assert seen(up) == [path]


async def test_allowlisted_prefix_cannot_reach_another_model(tmp_path: Path) -> None:
    """A key allowed only ``gemini/gemini-1.5-flash*`` got 200 for a ``..`` name before the fix."""
    async with raw_upstream(GEMINI_OK) as up:
        cfg = {
            "auth": {"master_key": MASTER},
            "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
            "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 100},
            "providers": providers(up.url),
            "models": [],
        }
        async with run_gateway(cfg) as gw:
            async with (
                aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
                s.post(gw.url + "/admin/keys", json={"name": "flash", "models": ["gemini/gemini-1.5-flash*"]}) as r,
            ):
                assert r.status == 201
                key = (await r.json())["key"]
            for model in (
                "gemini/gemini-1.5-flash/../../../v1/models/gemini-ultra",
                "gemini/gemini-1.5-flash/../gemini-ultra",
                "gemini/gemini-1.5-flash?key=x#",
                "gemini/gemini-1.5-flash%2F..%2Fgemini-ultra",
            ):
                status, body = await post(gw.url, "/v1/chat/completions", {"model": model, "messages": HI}, key)
                assert status in (400, 403), (model, body)
            assert seen(up) == []
            status, body = await post(
                gw.url, "/v1/chat/completions", {"model": "gemini/gemini-1.5-flash-002", "messages": HI}, key
            )
            assert status == 200, body
        assert seen(up) == ["/v1beta/models/gemini-1.5-flash-002:generateContent"]
