"""``POST /v1/messages/count_tokens``: Anthropic's token-counting route, answered by Fluxway's own
count (:mod:`fluxway.tokens`) for the model's first target, without calling any upstream.

The body is a Messages request without ``max_tokens``; the answer is ``{"input_tokens": N}``.
"""

from __future__ import annotations

import orjson

from fluxway import tokens
from fluxway.api.asgi import JSON_CT, Receive, Scope, Send, read_body, request_headers, respond
from fluxway.canonical import Endpoint
from fluxway.errors import GatewayError, forbidden
from fluxway.ingress.anthropic import AnthropicIngress
from fluxway.runtime import Runtime


async def count_tokens(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    ingress = AnthropicIngress()
    headers = request_headers(scope)
    server = rt.cfg.server
    try:
        principal = await rt.principal(ingress.api_key(headers))
        body = await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s, scope)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):  # a Messages request, less what counting does not need
            data["max_tokens"] = 1
            data.pop("stream", None)
            body = orjson.dumps(data)
        req = ingress.parse(Endpoint.CHAT, body)  # the same checks as POST /v1/messages, fields named
        if not principal.allows(req.model):
            raise forbidden(f"this API key may not use model '{req.model}'", param="model")
        target = rt.executor.resolve(req.model).targets[0]
        n = tokens.estimate_prompt_tokens(req.body, target.model)
        await respond(send, 200, orjson.dumps({"input_tokens": n}), [JSON_CT])
    except GatewayError as err:
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
        await respond(send, err.status, ingress.render_error(err), [JSON_CT, *extra])
