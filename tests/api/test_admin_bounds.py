"""Admin API bad input is a 400 in the OpenAI shape naming the field, never a 500 or a 503 (issue 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.store import dbs
from tests.support.gateway import run_gateway

MASTER = "sk-master-bounds"
db_url = dbs.db_url


async def _admin(url: str, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as s:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with s.request(method, url + path, **kwargs) as r:
            return r.status, await r.json()


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("/admin/keys", b'{"rpm": 9223372036854775808}', "rpm"),
    ("/admin/keys", b'{"tpm": 2147483648}', "tpm"),
    ("/admin/keys", b'{"rpm": -1}', "rpm"),
    ("/admin/keys", b'{"name": "a\\u0000b"}', "name"),
    ("/admin/keys", b'{"owner": "' + b"o" * 257 + b'"}', "owner"),
    ("/admin/keys", b'{"models": ["ok", "x\\u0000"]}', "models[1]"),
    ("/admin/keys", b'{"budget": {"amount_usd": 1e400}}', "budget.amount_usd"),
    ("/admin/keys", b'{"budget": {"amount_usd": NaN}}', "budget.amount_usd"),
    ("/admin/keys", b'{"budget": {"amount_usd": -5}}', "budget.amount_usd"),
    ("/admin/keys", b'{"metadata": {"k": "\\u0000"}}', "metadata"),
    ("/admin/keys", b'{"metadata": {"k": NaN}}', "metadata"),
    ("/admin/keys", b'{"model_limits": {"m*": {"rpm": 99999999999}}}', "model_limits.m*.rpm"),
    ("/admin/keys", b'{"expires_at": "9999-12-31T23:59:59-23:00"}', "expires_at"),
    ("/admin/teams", b'{"name": "t", "rpm": 3000000000}', "rpm"),
    ("/admin/teams", b'{"name": "t", "budget": {"amount_usd": 1e300}}', "budget.amount_usd"),
]


@pytest.mark.parametrize(("path", "raw", "field"), BAD_BODIES)
async def test_bad_body_is_a_400_naming_the_field(db_url: str, tmp_path: Path, path: str, raw: bytes,
                                                  field: str) -> None:
    async with run_gateway({"auth": {"master_key": MASTER}, "store": {"url": db_url}}) as gw:
        status, body = await _admin(gw.url, "POST", path, raw=raw)
        assert status == 400, body
        assert body["error"]["param"] == field and body["error"]["type"] == "invalid_request_error", body
        # the store still works afterwards
        assert (await _admin(gw.url, "POST", "/admin/keys", {"name": "fine", "rpm": 2**31 - 1}))[0] == 201


async def test_bad_path_and_query_values_are_400s_not_store_errors(db_url: str) -> None:
    async with run_gateway({"auth": {"master_key": MASTER}, "store": {"url": db_url}}) as gw:
        for method, path, field in [
            ("GET", "/admin/keys/a%00b", "key_id"),
            ("PATCH", "/admin/teams/" + "t" * 200, "team_id"),
            ("GET", "/admin/keys?team=x%00y", "team"),
            ("GET", "/admin/logs?model=m%00", "model"),
            ("GET", "/admin/logs?status=99999999999", "status"),
            ("GET", "/admin/logs?since=nan", "since"),
            ("GET", "/admin/usage?until=1e300", "until"),
            ("GET", "/admin/logs?cursor=WzEuMCwgImFcdTAwMDBiIl0", "cursor"),
        ]:
            status, body = await _admin(gw.url, method, path, {} if method == "PATCH" else None)
            assert status == 400, (path, body)
            assert body["error"]["param"] == field, (path, body)
