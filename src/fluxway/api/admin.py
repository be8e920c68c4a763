"""The admin API (FastAPI, off the hot path): keys, teams, budgets, usage and logs; docs at ``/docs``;
GraphQL over the same data at ``/admin/graphql`` (:mod:`fluxway.api.graphql`).

Every route needs the master key or an admin-role key (``Authorization: Bearer``); errors use the
OpenAI error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fluxway.api.admin_queries import log_out, logs_page, parse_status, parse_time, usage_report
from fluxway.api.asgi import read_body
from fluxway.api.docs import bearer_scheme, install_docs
from fluxway.errors import GatewayError, bad_request, openai_error_body
from fluxway.policy.accounts import (
    KeyCreate,
    KeyUpdate,
    TeamCreate,
    TeamUpdate,
    iso,
    key_out,
    team_out,
)
from fluxway.policy.auth import admin_principal
from fluxway.policy.budget import NANO, period_window
from fluxway.policy.hooks import Principal
from fluxway.policy.keys import BudgetLine
from fluxway.store.usage import is_bad_data

if TYPE_CHECKING:
    from fluxway.policy.governance import Governance

log = logging.getLogger("fluxway.admin")

GroupBy = Literal["key", "team", "model", "provider", "tag", "status", "day", "hour"]
# Path and query strings reach store queries: bounded and free of control characters (NUL included).
_PLAIN = r"^[^\x00-\x1f\x7f]*$"
KeyId = Annotated[str, Path(max_length=64, pattern=_PLAIN)]
TeamId = Annotated[str, Path(max_length=128, pattern=_PLAIN)]
TeamQ = Annotated[str | None, Query(max_length=128, pattern=_PLAIN)]
KeyQ = Annotated[str | None, Query(max_length=64, pattern=_PLAIN)]
ModelQ = Annotated[str | None, Query(max_length=256, pattern=_PLAIN)]
TimeQ = Annotated[str | None, Query(max_length=64, description="ISO 8601 or epoch seconds")]


def _error_response(err: GatewayError) -> JSONResponse:
    return JSONResponse(openai_error_body(err), status_code=err.status, headers=err.headers or None)


def _loc(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


async def require_admin(
    request: Request, _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None
) -> Principal:
    """FastAPI dependency: the caller's principal, if it is the master key or an admin key."""
    gov: Governance = request.app.state.governance
    return await admin_principal(gov.auth.resolve, request.headers)


Admin = Annotated[Principal, Depends(require_admin)]


def build_admin_app(gov: Governance) -> FastAPI:
    app = FastAPI(
        title="Fluxway admin API",
        version="1",
        docs_url=None,  # served by api.docs, without a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
        description="Virtual keys, teams, budgets, usage and request logs. "
        "Authenticate with the master key or an admin key: `Authorization: Bearer <key>`.",
    )
    app.state.governance = gov
    install_docs(app)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = _loc(first.get("loc", ()))
        msg = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        return _error_response(bad_request(f"{where}: {msg}", param=where))

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(OSError)
    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        if is_bad_data(exc):  # the values themselves were refused: the caller's input, not an outage
            log.warning("admin %s %s: value refused by the store: %s", request.method, request.url.path, exc)
            return _error_response(bad_request("a value in the request cannot be stored (too long or out of range)"))
        log.error("admin %s %s: store error: %s", request.method, request.url.path, exc)
        return _error_response(
            GatewayError(503, "the store is unavailable; retry shortly", type="server_error",
                         code="store_unavailable", headers={"retry-after": "1"})
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # Never a plain-text "Internal Server Error": the OpenAI error shape, the detail in the log.
        log.exception("admin %s %s: internal error", request.method, request.url.path)
        return _error_response(GatewayError(500, "internal error", type="server_error", code="internal_error"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        message = f"no route {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return _error_response(GatewayError(exc.status_code, message, code=code))

    # keys --------------------------------------------------------------------------------

    @app.post("/admin/keys", status_code=201, tags=["keys"], summary="Create a virtual key (the secret is shown once)")
    async def create_key(body: KeyCreate, _: Admin) -> dict[str, Any]:
        row, secret = await gov.accounts.create_key(body)
        return {**key_out(row), "key": secret}

    @app.get("/admin/keys", tags=["keys"], summary="List keys")
    async def list_keys(
        _: Admin, team: TeamQ = None, include_revoked: bool = True
    ) -> dict[str, Any]:
        rows = await gov.accounts.list_keys(team=team, include_revoked=include_revoked)
        return {"object": "list", "data": [key_out(r) for r in rows]}

    @app.get("/admin/keys/{key_id}", tags=["keys"], summary="One key")
    async def get_key(key_id: KeyId, _: Admin) -> dict[str, Any]:
        return key_out(await gov.accounts.get_key(key_id))

    @app.patch("/admin/keys/{key_id}", tags=["keys"], summary="Update a key (fields sent change; null clears)")
    async def update_key(key_id: KeyId, body: KeyUpdate, _: Admin) -> dict[str, Any]:
        return key_out(await gov.accounts.update_key(key_id, body))

    @app.delete("/admin/keys/{key_id}", tags=["keys"], summary="Revoke a key (it answers 401 from then on)")
    async def revoke_key(key_id: KeyId, _: Admin) -> dict[str, Any]:
        return key_out(await gov.accounts.revoke_key(key_id))

    # teams -------------------------------------------------------------------------------

    @app.post("/admin/teams", status_code=201, tags=["teams"], summary="Create a team")
    async def create_team(body: TeamCreate, _: Admin) -> dict[str, Any]:
        return team_out(await gov.accounts.create_team(body))

    @app.get("/admin/teams", tags=["teams"], summary="List teams")
    async def list_teams(_: Admin) -> dict[str, Any]:
        return {"object": "list", "data": [team_out(r) for r in await gov.accounts.list_teams()]}

    @app.get("/admin/teams/{team_id}", tags=["teams"], summary="One team")
    async def get_team(team_id: TeamId, _: Admin) -> dict[str, Any]:
        return team_out(await gov.accounts.get_team(team_id))

    @app.patch("/admin/teams/{team_id}", tags=["teams"], summary="Update a team")
    async def update_team(team_id: TeamId, body: TeamUpdate, _: Admin) -> dict[str, Any]:
        return team_out(await gov.accounts.update_team(team_id, body))

    @app.delete("/admin/teams/{team_id}", tags=["teams"], summary="Delete a team without active keys")
    async def delete_team(team_id: TeamId, _: Admin) -> dict[str, Any]:
        await gov.accounts.delete_team(team_id)
        return {"id": team_id, "object": "team", "deleted": True}

    # budgets, usage, logs ----------------------------------------------------------------

    @app.get("/admin/budgets", tags=["spend"], summary="Spend against budget, per key and team")
    async def budgets(_: Admin, scope: Annotated[str | None, Query(max_length=256)] = None) -> dict[str, Any]:
        now = gov.clock()
        entries: list[tuple[str, str, str | None, Any, Any]] = []
        for r in await gov.accounts.list_keys(include_revoked=False):
            entries.append(("key", r["id"], r.get("name"), r.get("budget_usd"), r.get("budget_period")))
        for r in await gov.accounts.list_teams():
            entries.append(("team", r["id"], r["id"], r.get("budget_usd"), r.get("budget_period")))
        data = []
        for kind, ident, name, amount, period in entries:
            if amount is None:
                continue
            line = BudgetLine(f"{kind}:{ident}", float(amount), str(period or "monthly"))
            if scope is not None and line.scope != scope:
                continue
            spent, reserved = await gov.budget.ledger.state(line, now)
            w = period_window(line.period, now)
            data.append(
                {
                    "scope": line.scope,
                    "type": kind,
                    "id": ident,
                    "name": name,
                    "period": line.period,
                    "amount_usd": line.amount_usd,
                    "spent_usd": spent / NANO,
                    "reserved_usd": reserved / NANO,
                    "remaining_usd": max(0.0, line.amount_usd - (spent + reserved) / NANO),
                    "period_start": iso(w.start),
                    "resets_at": iso(w.end),
                }
            )
        return {"object": "list", "data": data}

    @app.get("/admin/usage", tags=["spend"],
             summary="Usage aggregates by key, team, model, provider, tag, status, day or hour (from the rollups)")
    async def usage(
        _: Admin,
        group_by: GroupBy = "key",
        since: TimeQ = None,
        until: TimeQ = None,
    ) -> dict[str, Any]:
        t0, t1 = parse_time(since, "since"), parse_time(until, "until")
        data = await usage_report(gov, group_by, t0, t1)
        return {"object": "list", "group_by": group_by, "since": iso(t0), "until": iso(t1), "data": data}

    @app.get("/admin/logs", tags=["spend"], summary="Request logs, newest first, paginated by cursor")
    async def logs(
        _: Admin,
        key: KeyQ = None,
        model: ModelQ = None,
        status: Annotated[str | None, Query(max_length=16, description="an HTTP status, 'success' or 'error'")] = None,
        since: TimeQ = None,
        until: TimeQ = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        bodies: Annotated[bool, Query(description="include request_body and response_body (JSON text)")] = False,
    ) -> dict[str, Any]:
        st = parse_status(status)
        t0, t1 = parse_time(since, "since"), parse_time(until, "until")
        rows, nxt = await logs_page(
            gov, key=key, model=model, status=st, since=t0, until=t1, limit=limit, cursor=cursor, bodies=bodies
        )
        return {"object": "list", "data": [log_out(r) for r in rows], "next_cursor": nxt, "has_more": nxt is not None}

    # GraphQL -------------------------------------------------------------------------------

    @app.api_route("/admin/graphql", methods=["GET", "POST"], include_in_schema=False)
    async def graphql(request: Request, _: Admin) -> Response:
        """Read-only GraphQL over keys, teams, usage and logs (docs/graphql.md); not in the OpenAPI
        document (GraphQL describes itself: introspection)."""
        cfg = gov.cfg.admin.graphql
        if not cfg.enabled:
            raise GatewayError(404, f"no route {request.url.path}", code="not_found")
        endpoint = getattr(app.state, "graphql", None)
        if endpoint is None:
            from fluxway.api.graphql.endpoint import GraphqlEndpoint  # graphql-core: loaded on first use

            endpoint = app.state.graphql = GraphqlEndpoint(gov, cfg)
        server = gov.cfg.server
        try:
            # Room for the query JSON-escaped and its variables, within the gateway's own cap.
            limit = min(server.max_body_bytes, 8 * cfg.max_query_bytes + 65536)
            body = b""
            if request.method == "POST":
                body = await read_body(request.receive, dict(request.headers), limit, server.body_timeout_s,
                                       request.scope)
        except GatewayError as err:  # too large (413), too slow (408)
            status, answer = endpoint.refused(err)
        else:
            status, answer = await endpoint.handle(request.method, request.query_params, body)
        return Response(orjson.dumps(answer), status_code=status, media_type="application/json")

    @app.get("/admin/alerts", tags=["alerts"],
             summary="Alert rules with each subject's state, and the history of fired / resolved alerts")
    async def alerts(
        _: Admin,
        rule: Annotated[str | None, Query(max_length=64, pattern=_PLAIN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:
        return await alerts_page(gov, rule=rule, limit=limit, cursor=cursor)

    return app


async def alerts_page(gov: Governance, *, rule: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """``GET /admin/alerts``: the rules (from the config), each subject's state (from the store, with
    the value this process last computed) and one page of the history, newest first."""
    from fluxway.events.alerts.store import AlertStore

    after: int | None = None
    if cursor:
        try:
            after = int(cursor)
        except ValueError:
            raise bad_request("invalid cursor", param="cursor") from None
    store = gov.alerts.store if gov.alerts is not None else AlertStore(gov.store.engine)
    engine = gov.alerts
    states = await store.states()
    history, nxt = await store.history(rule=rule, limit=limit, cursor=after)
    rules = []
    for r in gov.cfg.alerts:
        if rule is not None and r.name != rule:
            continue
        live = engine.rules[r.name].values if engine is not None and r.name in engine.rules else {}
        subjects = []
        for st in states:
            if st["rule"] != r.name:
                continue
            reading = live.get(st["subject"])
            subjects.append({
                "subject": st["subject"],
                "state": st["state"],
                "since": iso(st["since"]),
                "value": reading.value if reading is not None else None,
                "value_at_change": st["value"],
                "threshold": reading.threshold if reading is not None else st["threshold"],
            })
        known = {x["subject"] for x in subjects}
        for subject, reading in sorted(live.items()):
            if subject not in known:
                subjects.append({"subject": subject, "state": "ok", "since": None, "value": reading.value,
                                 "value_at_change": None, "threshold": reading.threshold})
        rules.append({
            **r.model_dump(mode="json", exclude_none=True),
            "firing": sum(1 for x in subjects if x["state"] == "firing"),
            "subjects": subjects,
        })
    for h in history:
        h["at"] = iso(h["at"])
    return {
        "object": "alerts",
        "rules": rules,
        "history": history,
        "next_cursor": str(nxt) if nxt is not None else None,
        "has_more": nxt is not None,
    }
