"""CORS (issue 10): a browser app on an allowed origin gets its preflight answered and the origin
echoed on answers; other origins get nothing; with no origins configured nothing changes."""

from __future__ import annotations

import aiohttp

from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream

APP = "https://app.example.com"
BODY = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}


async def test_preflight_and_allowed_origin() -> None:
    async with openai_upstream() as up:
        cfg = config(up.url, server={"cors": {"origins": [APP]}})
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            pre = {"origin": APP, "access-control-request-method": "POST",
                   "access-control-request-headers": "authorization, content-type"}
            async with http.options(gw.url + "/v1/chat/completions", headers=pre) as r:
                assert r.status == 204
                assert r.headers["access-control-allow-origin"] == APP
                assert "POST" in r.headers["access-control-allow-methods"]
                assert r.headers["access-control-allow-headers"] == "authorization, content-type"
            async with http.post(gw.url + "/v1/chat/completions", json=BODY, headers={"origin": APP}) as r:
                assert r.status == 200 and r.headers["access-control-allow-origin"] == APP
                assert "x-request-id" in r.headers["access-control-expose-headers"]
            async with http.post(gw.url + "/v1/chat/completions", json=BODY,
                                 headers={"origin": "https://evil.example"}) as r:
                assert r.status == 200 and "access-control-allow-origin" not in r.headers
            evil = {**pre, "origin": "https://evil.example"}
            async with http.options(gw.url + "/v1/chat/completions", headers=evil) as r:
                assert r.status == 405 and "access-control-allow-origin" not in r.headers


async def test_no_cors_by_default() -> None:
    async with (
        openai_upstream() as up, run_gateway(config(up.url)) as gw,
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/v1/chat/completions", json=BODY, headers={"origin": APP}) as r,
    ):
        assert r.status == 200 and "access-control-allow-origin" not in r.headers
