"""Complete surfaces (issue 10): GET /v1/models/{id}; 404 and 405 in the shape of the API called."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream


async def test_retrieve_one_model_with_the_sdk() -> None:
    async with openai_upstream() as up:
        cfg = config(up.url, auth={"master_key": "sk-m"})
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
            model = await client.models.retrieve("smart")
            assert (model.id, model.object, model.owned_by) == ("smart", "model", "fluxway")
            direct = await client.models.retrieve("up/gpt-4o")
            assert (direct.id, direct.owned_by) == ("up/gpt-4o", "up")
            for missing in ("nope", "ghost/gpt-4o"):
                with pytest.raises(openai.NotFoundError) as err:
                    await client.models.retrieve(missing)
                assert err.value.code == "model_not_found"
            async with aiohttp.ClientSession(headers={"authorization": "Bearer sk-m"}) as http:
                status, created = await _req(http, "POST", gw.url + "/admin/keys", {"name": "k", "models": ["cheap"]})
                assert status == 201, created
            limited = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=created["key"], max_retries=0)
            with pytest.raises(openai.NotFoundError):  # a model the key may not use does not exist for it
                await limited.models.retrieve("smart")
            with pytest.raises(openai.AuthenticationError):
                await openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="bad", max_retries=0).models.retrieve("smart")


async def _req(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_unknown_routes_and_wrong_methods_answer_in_the_callers_shape() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw, aiohttp.ClientSession() as http:
        status, body = await _req(http, "GET", gw.url + "/v1/messages")
        assert status == 405 and body["type"] == "error", body
        assert body["error"]["type"] == "invalid_request_error"
        status, body = await _req(http, "POST", gw.url + "/v1/messages/nope", {})
        assert status == 404 and body == {"type": "error", "error": {"type": "not_found_error",
                                                                     "message": "no route /v1/messages/nope"}}
        status, body = await _req(http, "GET", gw.url + "/v1/chat/completions")
        assert status == 405 and body["error"]["code"] == "method_not_allowed"
        status, body = await _req(http, "GET", gw.url + "/v1/nothing")
        assert status == 404 and body["error"]["code"] == "not_found"
        # The Anthropic SDK sees its own error type.
        client = anthropic.AsyncAnthropic(base_url=gw.url + "/v1/messages/x", api_key="k", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as err:
            await client.messages.create(model="smart", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert err.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                             "message": "no route /v1/messages/x/v1/messages"}}
