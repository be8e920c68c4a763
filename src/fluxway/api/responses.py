"""The Responses API's routes: ``POST /v1/responses`` through the one inference path
(:func:`fluxway.api.inference.handle`: keys, allowlists, limits, budgets, usage and logs as for any
call), and the stored responses' ``GET`` / ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items``, each reading only the calling key's own responses.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from fluxway.api.asgi import JSON_CT, Receive, Scope, Send, request_headers, respond
from fluxway.api.inference import handle
from fluxway.canonical import JSON, Endpoint
from fluxway.errors import GatewayError, bad_request, openai_error_body
from fluxway.ingress.base import bearer_token
from fluxway.ingress.responses import ResponsesIngress
from fluxway.ingress.responses_request import ResponsesCall
from fluxway.runtime import Runtime

if TYPE_CHECKING:  # the store loads with the Runtime, not when the app is built
    from fluxway.store.responses import ResponseStore, StoredResponse

_DAY_S = 86400.0

log = logging.getLogger("fluxway.responses")


def _store(rt: Runtime) -> ResponseStore:
    return rt.governance.store.responses


async def create_response(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    store = _store(rt)
    settings = rt.cfg.responses

    async def load(response_id: str, owner: str) -> list[Any] | None:
        try:
            record = await store.get(response_id, owner)
        except Exception:
            log.exception("reading stored response %s failed", response_id)
            raise GatewayError(503, "the store is unavailable, so previous_response_id cannot be read; retry shortly",
                               type="server_error", code="store_unavailable", param="previous_response_id",
                               headers={"retry-after": "1"}) from None
        if record is None:
            return None
        history = record.history
        if len(history) >= settings.max_items:
            raise bad_request(
                f"the conversation of '{response_id}' has {len(history)} items, the most one response may "
                f"continue from is {settings.max_items} (responses.max_items)", "previous_response_id",
                code="conversation_too_long",
            )
        return history

    async def keep(call: ResponsesCall, owner: str, final: JSON) -> None:
        from fluxway.store.responses import StoredResponse

        record = StoredResponse(
            id=str(final["id"]), key_id=owner, created_at=time.time(), model=call.request.model,
            previous_response_id=call.previous_response_id, context=call.history, input=call.input,
            response=final,
        )
        await store.put(record, settings.retention_days * _DAY_S)

    ingress = ResponsesIngress(load, keep)
    await handle(rt, ingress, Endpoint.CHAT, scope, receive, send, session=ingress)


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(404, f"Response with id '{response_id}' not found.", code="not_found")


async def _error(send: Send, err: GatewayError) -> None:
    headers = [JSON_CT, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items())]
    await respond(send, err.status, orjson.dumps(openai_error_body(err)), headers)


def _list_args(scope: Scope) -> tuple[str, str | None, int]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    order = query.get("order", ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise bad_request(f"'order' must be asc or desc; got {order!r}", "order", code="invalid_value")
    raw = query.get("limit", ["20"])[-1]
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"'limit' must be an integer between 1 and 100; got {raw!r}", "limit",
                          code="invalid_value") from None
    if not 1 <= limit <= 100:
        raise bad_request(f"'limit' must be between 1 and 100; got {limit}", "limit", code="invalid_value")
    after = query.get("after", [None])[-1]
    return order, after, limit


def input_items_page(record: StoredResponse, order: str, after: str | None, limit: int) -> JSON:
    items = [i for i in record.input if isinstance(i, dict)]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [i.get("id") for i in items]
        if after not in ids:
            raise bad_request(f"'after': no input item '{after}' in response '{record.id}'", "after",
                              code="invalid_value")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(items) > limit,
    }


async def stored_response(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET`` / ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""
    path: str = scope["path"]
    rest = path[path.index("/responses/") + len("/responses/"):]
    response_id, _, sub = rest.partition("/")
    method = scope["method"]
    try:
        headers = request_headers(scope)
        principal = await rt.principal(bearer_token(headers) or headers.get("x-api-key") or None)
        if not response_id or sub not in ("", "input_items") or (sub and method != "GET") or (
            method not in ("GET", "DELETE")
        ):
            what = f"method {method} not allowed on {path}" if response_id and sub in ("", "input_items") else \
                f"no route {path}"
            status = 405 if "not allowed" in what else 404
            raise GatewayError(status, what, code="method_not_allowed" if status == 405 else "not_found")
        store = _store(rt)
        if method == "DELETE":
            if not await store.delete(response_id, principal.id):
                raise _not_found(response_id)
            await respond(send, 200, orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                          [JSON_CT])
            return
        record = await store.get(response_id, principal.id)
        if record is None:
            raise _not_found(response_id)
        if sub == "input_items":
            order, after, limit = _list_args(scope)
            body = input_items_page(record, order, after, limit)
        else:
            body = record.response
        await respond(send, 200, orjson.dumps(body), [JSON_CT])
    except GatewayError as err:
        await _error(send, err)
    except Exception:  # the store unavailable: OpenAI's shape, never a bare 500
        log.exception("%s %s: the store failed", method, path)
        await _error(send, GatewayError(503, "the store is unavailable; retry shortly", type="server_error",
                                        code="store_unavailable", headers={"retry-after": "1"}))
