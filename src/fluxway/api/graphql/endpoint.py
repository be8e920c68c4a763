"""``/admin/graphql`` over HTTP: a request in (GET ``?query=`` or POST JSON), a status and body out.

POST takes ``{"query", "variables", "operationName"}`` as JSON; GET the same as query parameters
(``variables`` as JSON text). The admin API checks the caller first (401/403 in its shape); the
answer is then always GraphQL's ``{"data", "errors"}``:

* 400 — the request is not one: no query, not JSON, an operation that is not there, a query that
  does not parse (``GRAPHQL_PARSE_FAILED``); 413 for a query over ``admin.graphql.max_query_bytes``
  (and a body over 8 times that plus 64 KiB, or ``server.max_body_bytes``: it is not read);
* 200 — everything else, errors included: unknown fields (``GRAPHQL_VALIDATION_FAILED``), too deep or
  too costly (``QUERY_TOO_DEEP``, ``QUERY_TOO_COSTLY``), mutations (``OPERATION_NOT_SUPPORTED``; a
  GET gets 405), bad variables and arguments (``BAD_USER_INPUT``), and failures while resolving.

A query runs in stages, cheapest first: size, parse, depth and cost (before validation, whose cost
grows with the query), validation, execution.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from fluxway.api.graphql import errors, limits
from fluxway.api.graphql.resolvers import Context
from fluxway.api.graphql.schema import build
from fluxway.config_observability import GraphqlConfig
from fluxway.errors import GatewayError

if TYPE_CHECKING:
    from fluxway.policy.governance import Governance

Body = dict[str, Any]


@dataclass(frozen=True)
class Request:
    query: str
    variables: dict[str, Any]
    operation_name: str | None


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str = errors.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _answer(status: int, errs: list[GraphQLError], default_code: str) -> tuple[int, Body]:
    return status, {"errors": [errors.formatted(e, default_code) for e in errs]}


def read_request(method: str, params: Mapping[str, str], body: bytes) -> Request:
    """The query, variables and operation name of a GET (``params``) or POST (``body``, JSON)."""
    raw: Any
    if method == "GET":
        raw = dict(params)
        if raw.get("variables"):
            try:
                raw["variables"] = orjson.loads(raw["variables"])
            except orjson.JSONDecodeError:
                raise _Refused(400, "'variables' must be a JSON object") from None
    else:
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Refused(400, 'the body must be JSON: {"query": "...", "variables": {...}, '
                                '"operationName": "..."}') from None
        if not isinstance(raw, dict):
            raise _Refused(400, "the body must be a JSON object with a 'query'")
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _Refused(400, "'query' is required: a GraphQL query as a string")
    variables = raw.get("variables")
    if variables in (None, ""):
        variables = {}
    if not isinstance(variables, dict):
        raise _Refused(400, "'variables' must be a JSON object")
    name = raw.get("operationName")
    if name == "":
        name = None
    if name is not None and not isinstance(name, str):
        raise _Refused(400, "'operationName' must be a string")
    return Request(query, variables, name)


class GraphqlEndpoint:
    """The schema, built once per admin app, and the stages a request goes through."""

    def __init__(self, gov: Governance, cfg: GraphqlConfig) -> None:
        self.gov = gov
        self.cfg = cfg
        self.schema = build()

    def refused(self, err: GatewayError) -> tuple[int, Body]:
        """A request refused before it was read (its body too large or too slow), in GraphQL's shape."""
        code = errors.QUERY_TOO_LARGE if err.status == 413 else errors.BAD_REQUEST
        return _answer(err.status, [GraphQLError(err.message)], code)

    async def handle(self, method: str, params: Mapping[str, str], body: bytes) -> tuple[int, Body]:
        try:
            return await self.run(read_request(method, params, body), method)
        except _Refused as r:
            return _answer(r.status, [GraphQLError(r.message)], r.code)

    async def run(self, req: Request, method: str = "POST") -> tuple[int, Body]:
        size = len(req.query.encode("utf-8", "surrogatepass"))
        if size > self.cfg.max_query_bytes:
            raise _Refused(413, f"the query is {size} bytes; at most {self.cfg.max_query_bytes} are accepted",
                           errors.QUERY_TOO_LARGE)
        try:
            doc = parse(req.query)
        except GraphQLSyntaxError as err:
            return _answer(400, [err], errors.PARSE_FAILED)
        except RecursionError:
            raise _Refused(400, "the query nests too deeply to be parsed", errors.QUERY_TOO_DEEP) from None
        op = get_operation_ast(doc, req.operation_name)
        if op is None:
            names = [d.name.value for d in doc.definitions if isinstance(d, OperationDefinitionNode) and d.name]
            if req.operation_name is not None:
                raise _Refused(400, f"no operation named '{req.operation_name}' in the query (it has: "
                                    f"{', '.join(names) or 'none with a name'})")
            raise _Refused(400, "the query has no operation" if not names else
                           "the query has several operations: name the one to run with 'operationName'")
        if op.operation is not OperationType.QUERY:
            kind = op.operation.value
            refusal = errors.error(f"{kind}s are not supported: /admin/graphql is read-only "
                                   "(change keys and teams with the REST admin API)", errors.OPERATION_NOT_SUPPORTED)
            return _answer(405 if method == "GET" else 200, [refusal], errors.OPERATION_NOT_SUPPORTED)
        try:
            too_much = limits.check(self.schema, doc, op, req.variables, self.cfg)
            if too_much is not None:
                return _answer(200, [too_much], errors.QUERY_TOO_COSTLY)
            # In a thread: the event loop (serving, in this process) keeps its turns meanwhile.
            invalid = await asyncio.to_thread(validate, self.schema, doc)
        except RecursionError:
            raise _Refused(400, "the query nests too deeply to be checked", errors.QUERY_TOO_DEEP) from None
        if invalid:
            return _answer(200, invalid, errors.VALIDATION_FAILED)
        result = execute(self.schema, doc, context_value=Context(self.gov, self.cfg),
                         variable_values=req.variables, operation_name=req.operation_name)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        out: Body = {}
        if result.errors:
            # Without data, the request itself was refused (its variables); with data, a field failed.
            code = errors.BAD_USER_INPUT if result.data is None else errors.INTERNAL_ERROR
            out["errors"] = [errors.formatted(e, code) for e in result.errors]
        if result.data is not None or not result.errors:
            out["data"] = result.data
        return 200, out
