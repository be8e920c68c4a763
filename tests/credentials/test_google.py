"""The Google service-account flow against a local token endpoint that verifies the RS256 JWT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from fluxway.canonical import ErrorKind, UpstreamError
from fluxway.credentials.bearer import BearerSource
from fluxway.credentials.google import ServiceAccount, ServiceAccountFlow
from fluxway.transport import Transport
from tests.support.token_servers import GoogleTokenEndpoint, service_account
from tests.support.upstream import FakeUpstream


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport()
    yield t
    await t.close()


async def test_jwt_bearer_grant_refreshed_before_expiry_and_shared(transport: Transport) -> None:
    async with FakeUpstream() as up:
        info, public = service_account(up.url + "/token")
        google = GoogleTokenEndpoint(public, info["client_email"], up.url + "/token")
        up.route("POST", "/token", google.handle)
        clock = Clock()
        flow = ServiceAccountFlow(ServiceAccount.parse(json.dumps(info)), transport, clock=clock)
        source = BearerSource(flow.fetch, clock=clock)
        got = await asyncio.gather(*(source.credentials() for _ in range(10)))
        assert {c.bearer_token for c in got} == {"ya29.test-token-1"}
        assert len(google.issued) == 1  # ten concurrent calls, one grant
        assert google.claims[0]["iat"] == int(clock.now)
        clock.now += 3599 - 301
        assert (await source.credentials()).bearer_token == "ya29.test-token-1"
        clock.now += 2  # 299 s before expiry
        assert (await source.credentials()).bearer_token == "ya29.test-token-2"
        assert google.claims[1]["iat"] == int(clock.now)


async def test_a_key_the_endpoint_does_not_know_is_an_auth_failure(transport: Transport) -> None:
    async with FakeUpstream() as up:
        info, _ = service_account(up.url + "/token")
        _, other_public = service_account(up.url + "/token")
        google = GoogleTokenEndpoint(other_public, info["client_email"], up.url + "/token")
        up.route("POST", "/token", google.handle)
        flow = ServiceAccountFlow(ServiceAccount.parse(json.dumps(info)), transport)
        with pytest.raises(UpstreamError) as exc:
            await flow.fetch()
        assert exc.value.kind is ErrorKind.AUTH
        assert "Invalid JWT Signature" in exc.value.message


def test_service_account_parse_errors(tmp_path: object) -> None:
    info, _ = service_account("https://oauth2.googleapis.com/token")
    assert ServiceAccount.parse(json.dumps(info)).project_id == "test-project"
    with pytest.raises(ValueError, match="no client_email"):
        ServiceAccount.parse(json.dumps({**info, "client_email": ""}))
    with pytest.raises(ValueError, match="not a PEM private key"):
        ServiceAccount.parse(json.dumps({**info, "private_key": "-----BEGIN PRIVATE KEY-----\nnope"}))
    with pytest.raises(ValueError, match="only 'service_account'"):
        ServiceAccount.parse(json.dumps({**info, "type": "authorized_user"}))
    with pytest.raises(ValueError, match="cannot read the service-account file"):
        ServiceAccount.parse("/nonexistent/sa.json")
