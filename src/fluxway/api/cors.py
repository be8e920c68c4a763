"""CORS for browser callers (``server.cors.origins``): preflights answered, allowed origins echoed.

Off (no origins configured) it is not in the call path at all; on, it costs one header lookup per
request and one extra header on the answer of an allowed origin.
"""

from __future__ import annotations

from fluxway.api.asgi import ASGIApp, Message, Receive, Scope, Send
from fluxway.config import CorsConfig

_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"


class Cors:
    """Wraps an ASGI app with CORS handling for the configured origins."""

    def __init__(self, app: ASGIApp, cfg: CorsConfig) -> None:
        self._app = app
        self._any = "*" in cfg.origins
        self._origins = frozenset(o.rstrip("/").encode("latin-1") for o in cfg.origins if o != "*")
        self._max_age = str(cfg.max_age_s).encode()

    def _allowed(self, scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"origin":
                return value if self._any or value in self._origins else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        origin = self._allowed(scope)
        if origin is None:
            await self._app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":  # a preflight: answered here, never routed
            requested = b"authorization, content-type, x-api-key, anthropic-version"
            for name, value in scope["headers"]:
                if name == b"access-control-request-headers":
                    requested = value
            await send({"type": "http.response.start", "status": 204, "headers": [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", _METHODS),
                (b"access-control-allow-headers", requested),
                (b"access-control-max-age", self._max_age),
                (b"vary", b"origin"),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", origin),
                    (b"access-control-expose-headers", b"x-request-id, x-fluxway-provider, x-fluxway-model, "
                                                       b"x-fluxway-attempts, x-fluxway-cache, x-fluxway-overhead-ms"),
                    (b"vary", b"origin"),
                ]}
            await send(message)

        await self._app(scope, receive, send_with_origin)
