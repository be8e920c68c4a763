from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP client the openai SDK ships with
import pytest

from fluxway.canonical import CanonicalRequest, Endpoint, Target, Usage
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.policy.governance import Governance, build_governance
from fluxway.policy.hooks import CallContext, Outcome
from tests.store import dbs

db_url = dbs.db_url
MASTER = "sk-master-test"
NOW = 1_750_000_000.0


@pytest.fixture
async def gov(db_url: str, tmp_path: Path) -> AsyncIterator[Governance]:
    cfg = parse(
        {
            "auth": {"master_key": MASTER},
            "store": {"url": db_url},
            "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
            "providers": [{"name": "oai", "type": "openai", "api_keys": ["k"]}],
            "models": [{"name": "smart", "targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}],
        }
    )
    g = await build_governance(cfg, clock=lambda: NOW)
    await g.start()
    yield g
    await g.close()


@pytest.fixture
async def client(gov: Governance) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gov.admin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        c.headers["authorization"] = f"Bearer {MASTER}"
        yield c


def _err(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def test_admin_needs_master_or_admin_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/keys", headers={"authorization": ""})
    assert r.status_code == 401 and _err(r)["type"] == "authentication_error"
    r = await client.get("/admin/keys", headers={"authorization": "Bearer sk-fw-wrong"})
    assert r.status_code == 401
    user = (await client.post("/admin/keys", json={"name": "user"})).json()["key"]
    r = await client.get("/admin/keys", headers={"authorization": f"Bearer {user}"})
    assert r.status_code == 403 and _err(r)["type"] == "permission_error"
    admin = (await client.post("/admin/keys", json={"name": "ops", "role": "admin"})).json()["key"]
    r = await client.get("/admin/keys", headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 200
    r = await client.get("/admin/teams", headers={"authorization": "", "x-api-key": admin})
    assert r.status_code == 200


async def test_key_lifecycle(client: httpx.AsyncClient, gov: Governance) -> None:
    assert (await client.post("/admin/teams", json={"name": "search", "rpm": 100})).status_code == 201
    payload = {
        "name": "ci-bot",
        "owner": "ana@example.com",
        "team": "search",
        "models": ["smart", "openai/*"],
        "rpm": 60,
        "tpm": 100000,
        "budget": {"amount_usd": 5.0, "period": "monthly"},
        "expires_at": None,
        "role": "user",
    }
    r = await client.post("/admin/keys", json=payload)
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("sk-fw-") and created["id"] and created["prefix"] == secret[:14]
    assert created["budget"] == {"amount_usd": 5.0, "period": "monthly"} and created["team"] == "search"
    assert created["owner"] == "ana@example.com"

    listed = (await client.get("/admin/keys")).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert listed[0]["prefix"].startswith("sk-fw-") and "key" not in listed[0] and "key_hash" not in listed[0]
    assert all(secret not in str(v) for v in listed[0].values())

    one = (await client.get(f"/admin/keys/{created['id']}")).json()
    assert one["name"] == "ci-bot" and one["revoked"] is False

    r = await client.patch(f"/admin/keys/{created['id']}", json={"rpm": 10, "budget": None})
    assert r.status_code == 200 and r.json()["rpm"] == 10 and r.json()["budget"] is None
    assert r.json()["tpm"] == 100000  # untouched

    assert gov.auth.authenticate(secret).id == created["id"]
    r = await client.delete(f"/admin/keys/{created['id']}")
    assert r.status_code == 200 and r.json()["revoked"] is True and r.json()["revoked_at"]
    with pytest.raises(GatewayError) as ei:
        gov.auth.authenticate(secret)
    assert ei.value.status == 401

    r = await client.get("/admin/keys/key_nope")
    assert r.status_code == 404 and _err(r)["code"] == "not_found"
    assert (await client.get("/admin/keys", params={"include_revoked": "false"})).json()["data"] == []


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/keys", json={"name": "x", "colour": "red"})
    assert r.status_code == 400 and _err(r)["param"] == "colour"
    r = await client.post("/admin/keys", json={"rpm": -1})
    assert r.status_code == 400 and _err(r)["param"] == "rpm"
    r = await client.post("/admin/keys", json={"budget": {"amount_usd": 1, "period": "weekly"}})
    assert r.status_code == 400 and _err(r)["param"] == "budget.period"
    r = await client.post("/admin/keys", json={"team": "ghost"})
    assert r.status_code == 400 and _err(r)["param"] == "team"
    r = await client.post("/admin/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await client.post("/admin/teams", json={"name": "bad name"})
    assert r.status_code == 400 and _err(r)["param"] == "name"
    r = await client.get("/admin/nothing-here")
    assert r.status_code == 404 and _err(r)["code"] == "not_found"


async def test_team_crud(client: httpx.AsyncClient) -> None:
    body = {"name": "search", "rpm": 5, "tpm": 50, "budget": {"amount_usd": 20, "period": "daily"}, "models": ["smart"]}
    r = await client.post("/admin/teams", json=body)
    assert r.status_code == 201
    team = r.json()
    assert (team["id"], team["name"], team["rpm"], team["models"]) == ("search", "search", 5, ["smart"])
    assert team["budget"] == {"amount_usd": 20, "period": "daily"}
    assert (await client.post("/admin/teams", json=body)).status_code == 409
    assert [t["id"] for t in (await client.get("/admin/teams")).json()["data"]] == ["search"]
    r = await client.patch("/admin/teams/search", json={"rpm": 7})
    assert r.json()["rpm"] == 7 and r.json()["tpm"] == 50
    key = (await client.post("/admin/keys", json={"team": "search"})).json()
    assert (await client.delete("/admin/teams/search")).status_code == 409
    await client.delete(f"/admin/keys/{key['id']}")
    r = await client.delete("/admin/teams/search")
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert (await client.get("/admin/teams/search")).status_code == 404


async def _calls(gov: Governance, key_id: str, team: str | None, n: int, model: str = "smart",
                 status: int = 200) -> None:
    from fluxway.policy.hooks import Principal

    for i in range(n):
        req = CanonicalRequest(Endpoint.CHAT, model, {"model": model, "messages": []})
        ctx = CallContext(f"{key_id}-{model}-{i}", "openai", {}, None, req, principal=Principal(id=key_id, team=team))
        usage = Usage(prompt_tokens=1_000_000, completion_tokens=0) if status == 200 else None
        await gov.usage.post(ctx, Outcome(status, Target("oai", "gpt-4o-mini") if status == 200 else None, 1, usage))


async def test_budgets_usage_and_logs(client: httpx.AsyncClient, gov: Governance) -> None:
    await client.post("/admin/teams", json={"name": "t1", "budget": {"amount_usd": 10, "period": "monthly"}})
    k1 = (await client.post("/admin/keys", json={"name": "a", "team": "t1",
                                                   "budget": {"amount_usd": 1, "period": "daily"}})).json()
    k2 = (await client.post("/admin/keys", json={"name": "b"})).json()
    await _calls(gov, k1["id"], "t1", 3)  # 3 x 1M prompt tokens of gpt-4o-mini = 3 x $0.15
    await _calls(gov, k2["id"], None, 2, model="other")
    await _calls(gov, k2["id"], None, 1, status=502)

    data = (await client.get("/admin/budgets")).json()["data"]
    by_scope = {d["scope"]: d for d in data}
    assert set(by_scope) == {f"key:{k1['id']}", "team:t1"}
    assert by_scope[f"key:{k1['id']}"]["spent_usd"] == pytest.approx(0.45)
    assert by_scope[f"key:{k1['id']}"]["remaining_usd"] == pytest.approx(0.55)
    assert by_scope["team:t1"]["spent_usd"] == pytest.approx(0.45)
    assert by_scope["team:t1"]["resets_at"] == "2025-07-01T00:00:00Z"

    usage = (await client.get("/admin/usage", params={"group_by": "key"})).json()
    rows = {r["key"]: r for r in usage["data"]}
    assert rows[k1["id"]]["requests"] == 3 and rows[k1["id"]]["cost_usd"] == pytest.approx(0.45)
    assert rows[k1["id"]]["name"] == "a" and rows[k2["id"]]["name"] == "b"
    assert rows[k2["id"]]["requests"] == 3 and rows[k2["id"]]["errors"] == 1
    models = {r["model"]: r["requests"] for r in (await client.get("/admin/usage?group_by=model")).json()["data"]}
    assert models == {"smart": 4, "other": 2}
    days = (await client.get("/admin/usage", params={"group_by": "day", "since": "2025-06-15"})).json()["data"]
    assert days == [pytest.approx(days[0])] and days[0]["day"] == "2025-06-15" and days[0]["requests"] == 6
    none = (await client.get("/admin/usage", params={"since": NOW + 1})).json()["data"]
    assert none == []
    r = await client.get("/admin/usage", params={"group_by": "colour"})
    assert r.status_code == 400 and _err(r)["param"] == "group_by"
    r = await client.get("/admin/usage", params={"since": "yesterday"})
    assert r.status_code == 400 and _err(r)["param"] == "since"

    page = (await client.get("/admin/logs", params={"limit": 4})).json()
    assert len(page["data"]) == 4 and page["has_more"] and page["next_cursor"]
    rest = (await client.get("/admin/logs", params={"limit": 4, "cursor": page["next_cursor"]})).json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None
    ids = [r["id"] for r in page["data"] + rest["data"]]
    assert len(set(ids)) == 6
    assert page["data"][0]["created_at"].endswith("Z")
    errors = (await client.get("/admin/logs", params={"status": "error"})).json()["data"]
    assert [e["status"] for e in errors] == [502]
    mine = (await client.get("/admin/logs", params={"key": k1["id"], "model": "smart", "status": 200})).json()
    assert len(mine["data"]) == 3
    r = await client.get("/admin/logs", params={"cursor": "garbage!"})
    assert r.status_code == 400 and _err(r)["param"] == "cursor"
    r = await client.get("/admin/logs", params={"limit": 0})
    assert r.status_code == 400


async def test_openapi_docs(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs", headers={"authorization": ""})
    assert r.status_code == 200 and "swagger" in r.text.lower()
    # No CDN (issue 10): every asset the page loads is served by the gateway itself.
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in r.text
        got = await client.get(asset, headers={"authorization": ""})
        assert got.status_code == 200 and len(got.content) > 10_000
    assert (await client.get("/docs/static/../../etc/passwd")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    # The Authorize button: a bearer scheme the admin routes require.
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    assert spec["paths"]["/admin/keys"]["get"]["security"]
    paths = ["/admin/keys", "/admin/keys/{key_id}", "/admin/teams", "/admin/budgets", "/admin/usage", "/admin/logs"]
    for path in paths:
        assert path in spec["paths"]


async def test_store_outage_is_a_503_in_the_error_shape(
    client: httpx.AsyncClient, gov: Governance, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "Connect call failed")  # what asyncpg raises with the server down

    monkeypatch.setattr(gov.store.keys, "list_keys", refused)
    r = await client.get("/admin/keys")
    assert r.status_code == 503 and _err(r)["code"] == "store_unavailable" and r.headers["retry-after"] == "1"
