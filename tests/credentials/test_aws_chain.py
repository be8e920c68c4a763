"""The AWS credential chain against local servers speaking STS (XML), IMDSv2 and container
credentials, and shared profile files; then Bedrock through the gateway signed with chain keys,
the session token included, checked with botocore's own SigV4."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from fluxway.adapters.settings import BedrockSettings
from fluxway.canonical import ErrorKind, UpstreamError
from fluxway.config import parse
from fluxway.credentials.aws_chain import AwsChain
from fluxway.transport import Transport
from tests.support.gateway import run_gateway
from tests.support.replies import json_reply
from tests.support.token_servers import AwsKeys, ContainerEndpoint, Imds, StsEndpoint
from tests.support.upstream import FakeUpstream

ROLE = "arn:aws:iam::123456789012:role/FluxwayRole"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport()
    yield t
    await t.close()


def _bedrock(env: dict[str, str], **p: Any) -> BedrockSettings:
    cfg = parse({"providers": [{"name": "br", "type": "bedrock", "region": "us-west-2", **p}]}, env=env)
    provider = cfg.providers[0]
    assert isinstance(provider, BedrockSettings)
    return provider


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_web_identity_assumes_the_role_with_the_token_file(tmp_path: Path, transport: Transport) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected-sa-token\n")
    async with FakeUpstream() as up:
        sts = StsEndpoint(ROLE, "eyJhbGciOiJSUzI1NiJ9.projected-sa-token")
        up.route("POST", "/", sts.handle)
        env = {"HOME": str(tmp_path), "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file), "AWS_ROLE_ARN": ROLE,
               "AWS_ROLE_SESSION_NAME": "fluxway-test", "AWS_ENDPOINT_URL_STS": up.url}
        clock = Clock()
        chain = AwsChain(_bedrock(env), transport, clock)
        creds = await chain.credentials()
        assert chain.source == "web-identity"
        assert creds.extra == {"aws_access_key_id": sts.keys.key, "aws_secret_access_key": sts.keys.secret,
                               "aws_session_token": sts.keys.token}
        assert up.requests[0].headers["content-type"].startswith("application/x-www-form-urlencoded")
        token_file.write_text("eyJhbGciOiJSUzI1NiJ9.rotated")  # kubelet rotates the projected token
        sts.web_token = "eyJhbGciOiJSUzI1NiJ9.rotated"
        clock.now += 3600 - 299  # inside the early window: the role is assumed again, with the new token
        await chain.credentials()
        assert sts.calls == 2


async def test_imdsv2_token_first_then_role_credentials(tmp_path: Path, transport: Transport) -> None:
    async with FakeUpstream() as up:
        imds = Imds(keys=AwsKeys(lifetime_s=6 * 3600))
        imds.install(up)
        env = {"HOME": str(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": up.url}
        clock = Clock()
        chain = AwsChain(_bedrock(env), transport, clock)
        creds = await chain.credentials()
        assert chain.source == "instance metadata"
        assert creds.extra["aws_session_token"] == imds.keys.token
        assert [(r.method, r.path) for r in up.requests] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            ("GET", "/latest/meta-data/iam/security-credentials/FluxwayInstanceRole")]
        assert up.requests[0].headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        assert imds.refused == 0
        await chain.credentials()
        assert imds.puts == 1  # cached
        clock.now += 6 * 3600 - 200
        await chain.credentials()
        assert imds.puts == 2  # refreshed before expiry
        async with aiohttp.ClientSession() as s, s.get(up.url + "/latest/meta-data/iam/security-credentials/") as r:
            assert r.status == 401  # the server refuses IMDSv1 (no token header)


async def test_imds_that_refuses_the_token_put_is_an_auth_failure(tmp_path: Path, transport: Transport) -> None:
    async with FakeUpstream() as up:
        up.route("PUT", "/latest/api/token", lambda request: _status(403))
        chain = AwsChain(_bedrock({"HOME": str(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": up.url}), transport)
        with pytest.raises(UpstreamError) as exc:
            await chain.credentials()
        assert exc.value.kind is ErrorKind.AUTH and "instance metadata" in exc.value.message


async def _status(status: int) -> web.StreamResponse:
    return web.Response(status=status)


async def test_container_credentials_with_the_authorization_token(tmp_path: Path, transport: Transport) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("pod-identity-token")
    async with FakeUpstream() as up:
        container = ContainerEndpoint("pod-identity-token")
        up.route("GET", "/v1/credentials", container.handle)
        env = {"HOME": str(tmp_path), "AWS_CONTAINER_CREDENTIALS_FULL_URI": up.url + "/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}
        chain = AwsChain(_bedrock(env), transport)
        creds = await chain.credentials()
        assert chain.source == "container"
        assert creds.extra["aws_access_key_id"] == container.keys.key
        token_file.write_text("wrong")
        with pytest.raises(UpstreamError, match="HTTP 403"):
            await AwsChain(_bedrock(env), transport).credentials()


async def test_shared_profile_files(tmp_path: Path, transport: Transport) -> None:
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = sdef\n\n"
                                     "[work]\naws_access_key_id = AKIAWORK\naws_secret_access_key = swork\n"
                                     "aws_session_token = tok-work\n")
    (aws / "config").write_text("[profile cfgonly]\nregion = eu-west-1\naws_access_key_id = AKIACFG\n"
                                "aws_secret_access_key = scfg\n\n[profile empty]\nregion = us-east-1\n")
    home = {"HOME": str(tmp_path)}
    default = await AwsChain(_bedrock(home), transport).credentials()
    assert default.extra == {"aws_access_key_id": "AKIADEFAULT", "aws_secret_access_key": "sdef"}
    work = AwsChain(_bedrock({**home, "AWS_PROFILE": "work"}), transport)
    assert (await work.credentials()).extra["aws_session_token"] == "tok-work"
    assert work.source == "profile work"
    configured = await AwsChain(_bedrock(home, aws_profile="cfgonly"), transport).credentials()
    assert configured.extra["aws_access_key_id"] == "AKIACFG"
    for name, why in (("nope", "is in neither"), ("empty", "has neither keys")):
        with pytest.raises(UpstreamError, match=why) as exc:
            await AwsChain(_bedrock(home, aws_profile=name), transport).credentials()
        assert exc.value.kind is ErrorKind.AUTH


def test_static_keys_and_api_keys_skip_the_chain() -> None:
    assert _bedrock({}, aws_access_key_id="A", aws_secret_access_key="s").credential_flow() is None
    assert _bedrock({}, api_keys=["bedrock-key"]).credential_flow() is None
    assert _bedrock({"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "s"}).credential_flow() is None
    chained = _bedrock({"AWS_PROFILE": "p", "PATH": "/bin"})
    assert chained.credential_flow() == "fluxway.credentials.aws_chain:source_for"
    assert dict(chained.chain_env) == {"AWS_PROFILE": "p"}  # only what the chain reads


async def test_bedrock_signed_with_instance_role_keys_and_session_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = AwsKeys()

    async def converse(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        auth = request.headers["Authorization"]
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "x-amz-security-token" in signed
        stamp = datetime.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: stamp)
        headers = {k: v for k, v in request.headers.items() if k.lower() in signed and k.lower() != "x-amz-date"}
        check = AWSRequest(method="POST", url=f"http://{request.host}{request.raw_path}", headers=headers, data=body)
        SigV4Auth(BotoCredentials(keys.key, keys.secret, keys.token), "bedrock", "us-west-2").add_auth(check)
        if check.headers["Authorization"] != auth or request.headers["X-Amz-Security-Token"] != keys.token:
            return json_reply({"message": "The request signature we calculated does not match"}, 403,
                              {"x-amzn-errortype": "InvalidSignatureException"})
        return json_reply({"output": {"message": {"role": "assistant", "content": [{"text": "signed ok"}]}},
                           "stopReason": "end_turn", "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
                           "metrics": {"latencyMs": 100}})

    async with FakeUpstream() as metadata, FakeUpstream() as bedrock:
        imds = Imds(keys=keys)
        imds.install(metadata)
        bedrock.route("POST", f"/model/{MODEL}/converse", converse)
        config = {"providers": [{"name": "br", "type": "bedrock", "base_url": bedrock.url, "region": "us-west-2"}],
                  "models": [{"name": "claude", "targets": [{"provider": "br", "model": MODEL}]}]}
        env = {"HOME": str(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url}
        async with run_gateway(config, env=env) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            for _ in range(3):
                resp = await client.chat.completions.create(
                    model="claude", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
                assert resp.choices[0].message.content == "signed ok"
        assert imds.puts == 1  # one metadata round for three calls
