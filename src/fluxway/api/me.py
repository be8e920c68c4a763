"""Self-service for an inference key: ``GET /v1/me`` (the key, its limits, budgets and spend) and
``GET /v1/me/usage`` (its own usage aggregates, the grouping and ranges of ``/admin/usage``).

Authenticated like inference (``Authorization: Bearer`` or ``x-api-key``); errors in OpenAI's shape.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from fluxway.api.asgi import JSON_CT, Receive, Scope, Send, request_headers, respond
from fluxway.errors import GatewayError, bad_request
from fluxway.ingress.openai import OpenAIIngress
from fluxway.policy.hooks import Principal
from fluxway.runtime import Runtime

_INGRESS = OpenAIIngress()


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    try:
        pairs = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise bad_request("the query string is not UTF-8") from None
    return {k: v[-1] for k, v in pairs.items()}


async def _budgets(rt: Runtime, p: Principal) -> list[dict[str, Any]]:
    from fluxway.policy.accounts import iso
    from fluxway.policy.budget import NANO, period_window

    gov = rt.governance
    now = gov.clock()
    out = []
    for line in p.budgets:
        spent, reserved = await gov.budget.ledger.state(line, now)
        w = period_window(line.period, now)
        out.append({
            "scope": line.scope,
            "period": line.period,
            "amount_usd": line.amount_usd,
            "spent_usd": spent / NANO,
            "reserved_usd": reserved / NANO,
            "remaining_usd": max(0.0, line.amount_usd - (spent + reserved) / NANO),
            "period_start": iso(w.start),
            "resets_at": iso(w.end),
        })
    return out


async def _me(rt: Runtime, p: Principal, scope: Scope) -> dict[str, Any]:
    gov = rt.governance
    await _flush(rt)
    return {
        "object": "key",
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "team": p.team,
        "models": list(p.models) if p.models is not None else None,
        "limits": [dict(lim) for lim in p.limits],
        "budgets": await _budgets(rt, p),
        "spend_usd": await gov.store.usage.spend(key_id=p.id),
    }


async def _flush(rt: Runtime) -> None:
    from fluxway.api.admin_queries import flush_usage  # loaded on first use

    await flush_usage(rt.governance)  # what is still spooled counts too; the store down: the query answers 503


async def _me_usage(rt: Runtime, p: Principal, scope: Scope) -> dict[str, Any]:
    from fluxway.api.admin_queries import parse_time, usage_data  # loaded on first use
    from fluxway.policy.accounts import iso
    from fluxway.store.usage_report import GROUPS

    q = _query(scope)
    group_by = q.get("group_by") or "model"
    if group_by not in GROUPS:
        raise bad_request(f"'group_by' must be one of {', '.join(GROUPS)}", param="group_by")
    t0, t1 = parse_time(q.get("since"), "since"), parse_time(q.get("until"), "until")
    await _flush(rt)
    rows = await rt.governance.store.usage.aggregate(group_by, t0, t1, key_id=p.id)
    return {"object": "list", "key": p.id, "group_by": group_by, "since": iso(t0), "until": iso(t1),
            "data": usage_data(rows, group_by)}


def _route(build: Any) -> Any:
    async def run(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = await rt.principal(_INGRESS.api_key(request_headers(scope)))
            body = await build(rt, principal, scope)
        except GatewayError as err:
            await respond(send, err.status, _INGRESS.render_error(err), [JSON_CT])
            return
        except Exception:  # the store unavailable: OpenAI's shape, never a bare 500
            down = GatewayError(503, "the store is unavailable; retry shortly", type="server_error",
                                code="store_unavailable")
            await respond(send, 503, _INGRESS.render_error(down), [JSON_CT, (b"retry-after", b"1")])
            return
        await respond(send, 200, orjson.dumps(body), [JSON_CT])

    return run


me = _route(_me)
me_usage = _route(_me_usage)
