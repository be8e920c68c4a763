"""The ASGI application: a raw dispatcher for the hot inference routes, lifespan building the Runtime.

Inference routes run with no framework in between (PERFORMANCE.md: a framework's routing costs
15-50% of throughput). Admin and docs routes are delegated to an ASGI sub-app when one is installed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fluxway.api.asgi import JSON_CT, Receive, Scope, Send, request_headers, respond
from fluxway.api.cors import Cors
from fluxway.api.inference import handle
from fluxway.api.me import me, me_usage
from fluxway.canonical import Endpoint
from fluxway.config import Config
from fluxway.errors import GatewayError, error_body, model_not_found, openai_error_body
from fluxway.ingress.base import Ingress, bearer_token
from fluxway.ingress.openai import OpenAIIngress
from fluxway.observability import render as render_metrics
from fluxway.policy.auth import admin_principal
from fluxway.runtime import Runtime

log = logging.getLogger("fluxway")

Handler = Callable[[Runtime, Scope, Receive, Send], Awaitable[None]]
# Per-object routes of the pass-through surface (api/surface_objects.py).
_OBJECT_PREFIXES = ("/v1/files/", "/files/", "/v1/batches/", "/batches/")


def _inference(ingress: Ingress, endpoint: Endpoint) -> Handler:
    async def run(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        await handle(rt, ingress, endpoint, scope, receive, send)

    return run


async def _json(send: Send, status: int, data: object) -> None:
    await respond(send, status, orjson.dumps(data), [JSON_CT])


async def _live(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _json(send, 200, {"status": "ok"})


async def _ready(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """200 while the gateway can serve, listing what is degraded (the store down: calls are still
    served and usage spooled; a model without a healthy target); 503 only when no model can serve."""
    checks = rt.ready()
    unhealthy = [] if checks.get("targets", True) else rt.unhealthy_models()
    routes = len(rt.executor.routes)
    serving = routes == 0 or len(unhealthy) < routes
    degraded = [name for name, ok in checks.items() if not ok]
    status = "unavailable" if not serving else ("degraded" if degraded or unhealthy else "ok")
    body: dict[str, object] = {"status": status, "checks": checks}
    if degraded:
        body["degraded"] = degraded
    if unhealthy:
        body["unhealthy_models"] = unhealthy
    await _json(send, 200 if serving else 503, body)


async def _metrics_allowed(rt: Runtime, scope: Scope) -> bool:
    token = rt.cfg.observability.metrics.token
    if token is None:
        return True
    headers = request_headers(scope)
    given = bearer_token(headers)
    if given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    if not given:
        return False
    try:
        principal = await rt.principal(given)
    except GatewayError:
        return False
    return principal.is_admin


async def _metrics(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    if not await _metrics_allowed(rt, scope):
        err = GatewayError(401, "GET /metrics needs 'Authorization: Bearer <observability.metrics.token>'",
                           type="authentication_error", code="unauthorized")
        await respond(send, 401, orjson.dumps(openai_error_body(err)), [JSON_CT, (b"www-authenticate", b"Bearer")])
        return
    await respond(send, 200, render_metrics(rt), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])


async def _admin_principal(rt: Runtime, scope: Scope, send: Send) -> bool:
    """True if the caller may use admin routes; otherwise answers 401/403 and returns False."""
    try:
        await admin_principal(rt.principal, request_headers(scope))
    except GatewayError as err:
        await respond(send, err.status, orjson.dumps(openai_error_body(err)), [JSON_CT])
        return False
    return True


async def _providers(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    if not await _admin_principal(rt, scope, send):
        return
    snap = rt.executor.board.snapshot()
    full = snap.to_dict()
    providers = [
        {"name": p.name, "type": p.type, "keys": len(p.api_keys), "health_check": p.health_check is not None}
        for p in rt.cfg.providers
    ]
    targets = {k: snap.targets[k].to_dict() for k in sorted(snap.targets)}
    await _json(send, 200, {"providers": providers, "targets": targets, "keys": full["keys"],
                            "unhealthy_models": rt.unhealthy_models()})


async def _mcp(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    from fluxway.mcp.gateway import serve_mcp  # the MCP SDK: loaded on the first /mcp request

    await serve_mcp(rt, scope, receive, send)


async def _mcp_servers(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /admin/mcp/servers``: each configured MCP server's state (up, tools, last error)."""
    if not await _admin_principal(rt, scope, send):
        return
    servers = rt.mcp.status() if rt.mcp is not None else []
    await _json(send, 200, {"object": "list", "data": servers})


def _model_handler(ingress: OpenAIIngress) -> Handler:
    """``GET /v1/models/{id}``: one model this key may use (404 in OpenAI's shape otherwise)."""

    async def model(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        path: str = scope["path"]
        name = path[path.index("/models/") + len("/models/"):]
        try:
            principal = await rt.principal(ingress.api_key(headers))
            owner = "fluxway"
            provider, sep, upstream = name.partition("/")
            direct = rt.cfg.routing.allow_direct and sep and upstream and rt.cfg.provider(provider) is not None
            if not name or not principal.allows(name) or (name not in rt.executor.routes and not direct):
                raise model_not_found(name, [m for m in rt.executor.public_models if principal.allows(m)])
            if name not in rt.executor.routes:
                owner = provider
        except GatewayError as err:
            await respond(send, err.status, ingress.render_error(err), [JSON_CT])
            return
        await _json(send, 200, _model_object(name, owner, rt.model_facts().get(name)))

    return model


def _model_object(name: str, owner: str, facts: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": owner}
    if facts is not None:
        out["x_fluxway"] = facts  # capabilities and limits from the model catalog
    return out


def _models_handler(ingress: OpenAIIngress) -> Handler:
    async def models(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        try:
            principal = await rt.principal(ingress.api_key(headers))
        except GatewayError as err:
            await respond(send, err.status, ingress.render_error(err), [JSON_CT])
            return
        facts = rt.model_facts()
        data = [_model_object(name, "fluxway", facts.get(name)) for name in rt.executor.public_models
                if principal.allows(name)]
        await _json(send, 200, {"object": "list", "data": data})

    return models


class FluxwayApp:
    """``FluxwayApp(config)`` is an ASGI app; its Runtime lives from lifespan startup to shutdown."""

    def __init__(self, cfg: Config, *, server: bool = False) -> None:
        self.cfg = cfg
        self._server = server  # a whole server process (fluxway serve), not an embedded app
        self.runtime: Runtime | None = None
        openai = OpenAIIngress()
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): _inference(openai, Endpoint.CHAT),
            ("POST", "/v1/completions"): _inference(openai, Endpoint.COMPLETIONS),
            ("POST", "/v1/embeddings"): _inference(openai, Endpoint.EMBEDDINGS),
            ("GET", "/v1/models"): _models_handler(openai),
            ("GET", "/v1/me"): me,
            ("GET", "/v1/me/usage"): me_usage,
            ("GET", "/health/live"): _live,
            ("GET", "/health/ready"): _ready,
            ("GET", "/metrics"): _metrics,
            ("GET", "/admin/providers"): _providers,
            ("GET", "/admin/mcp/servers"): _mcp_servers,
            ("POST", "/mcp"): _mcp,
            ("GET", "/mcp"): _mcp,
            ("DELETE", "/mcp"): _mcp,
        }
        from fluxway.api.surface import routes as surface_routes

        self._routes.update(surface_routes())
        self._model = _model_handler(openai)
        self._responses_routes()
        self._cors: Cors | None = Cors(self._dispatch, cfg.server.cors) if cfg.server.cors.origins else None
        self._anthropic_ingress()
        # Also answer without the /v1 prefix, as several SDKs and gateways do.
        for (method, path), handler in list(self._routes.items()):
            if path.startswith("/v1/"):
                self._routes.setdefault((method, path[3:]), handler)

    def _responses_routes(self) -> None:
        from fluxway.api.responses import create_response, stored_response

        self._routes[("POST", "/v1/responses")] = create_response
        self._stored_response: Handler = stored_response

    def _anthropic_ingress(self) -> None:
        try:
            from fluxway.ingress.anthropic import AnthropicIngress
        except ImportError:  # the Anthropic ingress is optional while it is being built
            return
        from fluxway.api.count_tokens import count_tokens

        self._routes[("POST", "/v1/messages")] = _inference(AnthropicIngress(), Endpoint.CHAT)
        self._routes[("POST", "/v1/messages/count_tokens")] = count_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None:
            await self._cors(scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            rt = self.runtime
            if rt is None:
                await _json(send, 503, openai_error_body(GatewayError(503, "starting up", type="server_error")))
                return
            path: str = scope["path"]
            handler = self._routes.get((scope["method"], path))
            if handler is not None:
                await handler(rt, scope, receive, send)
                return
            if path.startswith(("/v1/responses/", "/responses/")):
                await self._stored_response(rt, scope, receive, send)
                return
            if scope["method"] == "GET" and path.startswith(("/v1/models/", "/models/")):
                await self._model(rt, scope, receive, send)
                return
            if path.startswith(_OBJECT_PREFIXES):
                from fluxway.api.surface_objects import object_handler

                if await object_handler(rt, scope, receive, send):
                    return
            if not path.startswith(("/v1/", "/messages")):
                await rt.governance.admin_app(scope, receive, send)
                return
            await self._not_found(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _not_found(self, scope: Scope, send: Send) -> None:
        """404 / 405, in Anthropic's error shape under its routes and OpenAI's elsewhere."""
        path = scope["path"]
        anthropic = path.startswith(("/v1/messages", "/messages"))
        if any(p == path for _, p in self._routes):
            err = GatewayError(405, f"method {scope['method']} not allowed on {path}", code="method_not_allowed")
            allow = ", ".join(sorted(m for m, p in self._routes if p == path))
            body = orjson.dumps(error_body(err, anthropic=anthropic))
            await respond(send, 405, body, [JSON_CT, (b"allow", allow.encode())])
            return
        await _json(send, 404, error_body(GatewayError(404, f"no route {path}", code="not_found"), anthropic=anthropic))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.runtime = await Runtime.start(self.cfg, freeze_heap=self._server)
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.runtime is not None:
                    await self.runtime.close()
                    self.runtime = None
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(cfg: Config, *, server: bool = False) -> FluxwayApp:
    return FluxwayApp(cfg, server=server)


def from_env() -> FluxwayApp:
    """App factory for multi-worker servers: the config path comes from ``FLUXWAY_CONFIG``."""
    from fluxway.config import env_config_path, load

    path = env_config_path()
    if not path:
        raise RuntimeError("FLUXWAY_CONFIG is not set")
    return FluxwayApp(load(path), server=True)
