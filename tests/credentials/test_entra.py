"""Azure OpenAI with Microsoft Entra ID: client credentials and managed identity (IMDS and App
Service) against local endpoints speaking each protocol, through the official openai SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp import web

from fluxway.config import ConfigError, parse
from fluxway.redact import Redactor
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import completion
from tests.support.replies import json_reply
from tests.support.token_servers import EntraEndpoint
from tests.support.upstream import FakeUpstream

DEPLOYMENT = "gpt-4o-prod"
PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions"


def _azure(issued: list[str]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if "api-key" in request.headers or request.headers.get("authorization") != "Bearer " + issued[-1]:
            return json_reply({"error": {"code": "401", "message": "Access denied due to invalid subscription key"
                                         " or wrong API endpoint."}}, 401)
        return json_reply(completion("entra ok"))

    return handle


async def _call_twice(config: dict[str, Any], env: dict[str, str] | None = None) -> None:
    async with run_gateway(config, env=env) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        for _ in range(2):
            resp = await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
            assert resp.choices[0].message.content == "entra ok"


def _config(url: str, entra: dict[str, Any]) -> dict[str, Any]:
    return {"providers": [{"name": "az", "type": "azure", "base_url": url, "entra_id": entra}],
            "models": [{"name": "gpt", "targets": [{"provider": "az", "model": DEPLOYMENT}]}]}


async def test_client_credentials() -> None:
    async with FakeUpstream() as login, FakeUpstream() as azure:
        entra = EntraEndpoint()
        entra.install(login)
        azure.route("POST", PATH, _azure(entra.issued))
        await _call_twice(_config(azure.url, {"tenant_id": entra.tenant, "client_id": entra.client_id,
                                              "client_secret": entra.client_secret, "authority_host": login.url}))
        assert len(entra.issued) == 1  # cached across calls
        sent = login.requests[0]
        assert sent.path == f"/{entra.tenant}/oauth2/v2.0/token"


async def test_a_wrong_secret_fails_the_call_as_auth() -> None:
    async with FakeUpstream() as login, FakeUpstream() as azure:
        entra = EntraEndpoint()
        entra.install(login)
        azure.route("POST", PATH, _azure(entra.issued))
        config = _config(azure.url, {"tenant_id": entra.tenant, "client_id": entra.client_id,
                                     "client_secret": "wrong-secret", "authority_host": login.url})
        async with run_gateway(config) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as exc:
                await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
        assert exc.value.status_code == 502
        assert "auth" in str(exc.value.body) and "AADSTS7000215" in str(exc.value.body)
        assert "wrong-secret" not in str(exc.value.body)
        assert azure.requests == []  # nothing sent without a token


async def test_managed_identity_on_imds() -> None:
    async with FakeUpstream() as metadata, FakeUpstream() as azure:
        entra = EntraEndpoint()
        entra.install(metadata)
        azure.route("POST", PATH, _azure(entra.issued))
        await _call_twice(_config(azure.url, {"managed_identity": True, "client_id": entra.client_id,
                                              "identity_endpoint": metadata.url + "/metadata/identity/oauth2/token"}))
        assert len(entra.issued) == 1
        assert entra.queries == [{"api-version": "2018-02-01", "resource": "https://cognitiveservices.azure.com",
                                  "client_id": entra.client_id}]


async def test_managed_identity_on_app_service() -> None:
    async with FakeUpstream() as metadata, FakeUpstream() as azure:
        entra = EntraEndpoint()
        entra.install(metadata)
        azure.route("POST", PATH, _azure(entra.issued))
        env = {"IDENTITY_ENDPOINT": metadata.url + "/msi/token", "IDENTITY_HEADER": entra.app_service_header}
        await _call_twice(_config(azure.url, {"managed_identity": True}), env)
        assert entra.queries == [{"api-version": "2019-08-01", "resource": "https://cognitiveservices.azure.com"}]


def test_entra_config_is_strict() -> None:
    def problems(entra: dict[str, Any], **p: Any) -> list[str]:
        with pytest.raises(ConfigError) as exc:
            parse({"providers": [{"name": "az", "type": "azure", "base_url": "https://r.openai.azure.com",
                                  "entra_id": entra, **p}]}, env={})
        return exc.value.problems

    assert problems({"tenant_id": "t", "client_id": "c"}) == [
        "providers[0].entra_id.client_secret: client credentials need tenant_id, client_id and client_secret"
        " (or managed_identity: true)"]
    assert problems({"managed_identity": True}, api_keys=["k"]) == [
        "providers[0].entra_id: azure takes api_keys or entra_id, not both"]
    assert any("entra_id.tenant" in p for p in problems({"tenant_id": "a/b", "client_id": "c", "client_secret": "s"}))
    cfg = parse({"providers": [{"name": "az", "type": "azure", "base_url": "https://r.openai.azure.com",
                                "entra_id": {"tenant_id": "t", "client_id": "c", "client_secret": "s3cr3t-value"}}]},
                env={})
    assert "s3cr3t-value" not in Redactor.from_config(cfg).text("echo s3cr3t-value")
