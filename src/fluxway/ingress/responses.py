"""The OpenAI Responses API shape (``POST /v1/responses``): requests in, Response objects and
event streams out, served by any configured model through the canonical request.

One :class:`ResponsesIngress` serves one call (it holds the call's state): the route builds it with
the store's two seams, ``load`` (a previous response's history, for ``previous_response_id``) and
``keep`` (store the final Response), so this module does no I/O of its own. The inference pipeline
calls :meth:`prepare` once the key is known and :meth:`commit` before the final Response (or
``response.completed``) leaves, so a follow-up can chain to it at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from fluxway.canonical import JSON, CanonicalRequest, CanonicalResponse, Endpoint
from fluxway.errors import GatewayError, openai_error_body
from fluxway.ingress.base import bearer_token
from fluxway.ingress.responses_object import (
    build_response,
    finish_status,
    output_items,
    tool_loop_items,
    usage_object,
)
from fluxway.ingress.responses_request import (
    ResponsesCall,
    new_id,
    parse_responses_request,
    previous_not_found,
    with_history,
)
from fluxway.ingress.responses_stream import ResponsesStreamEncoder

# (previous response id, owning key id) -> its history items, or None when there is none to see.
LoadHistory = Callable[[str, str], Awaitable[list[Any] | None]]
# (call, owning key id, final Response object) -> stored.
Keep = Callable[[ResponsesCall, str, JSON], Awaitable[None]]


class ResponsesIngress:
    name = "responses"
    content_type = "application/json"

    def __init__(self, load: LoadHistory, keep: Keep) -> None:
        self._load = load
        self._keep = keep
        self.call: ResponsesCall | None = None
        self.response_id = new_id("resp")
        self.created_at = int(time.time())
        self._owner = ""
        self._final: JSON | None = None
        self.tool_items: list[JSON] = []  # a tool loop's mcp_list_tools and mcp_call items

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        return bearer_token(headers) or headers.get("x-api-key") or None

    def parse(self, endpoint: Endpoint, body: bytes) -> CanonicalRequest:
        self.call = parse_responses_request(body)
        return self.call.request

    async def prepare(self, owner: str) -> None:
        """Once the caller is known: its previous response's history before this turn."""
        call = self.call
        assert call is not None
        self._owner = owner
        previous = call.previous_response_id
        if previous is None:
            return
        history = await self._load(previous, owner)
        if history is None:
            raise previous_not_found(previous)
        with_history(call, history)

    async def commit(self) -> None:
        """Store the final Response (``store`` true), before it is sent."""
        call, final = self.call, self._final
        if call is None or final is None or not call.store:
            return
        self._final = None
        await self._keep(call, self._owner, final)

    def _set_final(self, response: JSON) -> None:
        self._final = response

    def render(self, req: CanonicalRequest, resp: CanonicalResponse) -> bytes:
        call = self.call
        assert call is not None
        output, finish = output_items(resp)
        if self.tool_items:
            output = [*self.tool_items, *output]
        status, incomplete = finish_status(finish)
        final = build_response(call, self.response_id, self.created_at, output, status,
                               usage=usage_object(resp.usage), incomplete_details=incomplete)
        self._final = final
        return orjson.dumps(final)

    def set_tool_loop(self, listings: list[Any], calls: list[Any]) -> None:
        """A tool loop's listings and calls, output before the final answer's items."""
        self.tool_items = tool_loop_items(listings, calls)

    def stream_encoder(self, req: CanonicalRequest, request_id: str) -> ResponsesStreamEncoder:
        assert self.call is not None
        return ResponsesStreamEncoder(self.call, self.response_id, self.created_at, self._set_final)

    def render_error(self, err: GatewayError) -> bytes:
        return orjson.dumps(openai_error_body(err))

    def extra_headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        return []
