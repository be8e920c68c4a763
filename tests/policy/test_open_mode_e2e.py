"""Safe open mode (issue 10): with no master key, inference is served but the admin API is closed,
and revoking the last key reopens anonymous access instead of locking it out for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from fluxway.cli import main
from fluxway.policy.governance import Governance
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream

HI = [{"role": "user", "content": "hi"}]


async def _req(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               key: str | None = None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with http.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_open_mode_serves_inference_but_not_the_admin_api(tmp_path: Path) -> None:
    async with openai_upstream() as up:
        db = f"sqlite:///{tmp_path}/fw.db"
        cfg = config(up.url, store={"url": db}, usage={"spool_dir": str(tmp_path / "spool")})
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            status, _ = await _req(http, "POST", gw.url + "/v1/chat/completions", {"model": "smart", "messages": HI})
            assert status == 200
            for method, path, body in [("POST", "/admin/keys", {"name": "x", "role": "admin"}),
                                       ("GET", "/admin/keys", None), ("GET", "/admin/providers", None)]:
                for key in (None, "anything"):
                    status, err = await _req(http, method, gw.url + path, body, key)
                    assert status == 403, (path, err)
                    assert "master_key" in err["error"]["message"], err

            # A key made with the CLI (local access to the store) turns auth on ...
            conf = tmp_path / "fw.yaml"
            conf.write_text(yaml.safe_dump({"store": {"url": db}}))
            assert await asyncio.to_thread(main, ["keys", "create", "-c", str(conf), "--name", "ci", "--json"]) == 0
            gov = gw.runtime.governance
            assert isinstance(gov, Governance)
            await gov.cache.refresh()
            status, _ = await _req(http, "POST", gw.url + "/v1/chat/completions", {"model": "smart", "messages": HI})
            assert status == 401
            # ... and revoking the last one reopens open mode.
            [key] = (await gov.store.keys.active_keys())
            assert await asyncio.to_thread(main, ["keys", "revoke", "-c", str(conf), str(key["id"])]) == 0
            await gov.cache.refresh()
            status, _ = await _req(http, "POST", gw.url + "/v1/chat/completions", {"model": "smart", "messages": HI})
            assert status == 200
