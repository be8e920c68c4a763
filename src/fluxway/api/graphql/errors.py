"""GraphQL errors as clients get them: ``{"message", "locations", "path", "extensions": {"code"}}``.

Every error carries a code (``GRAPHQL_PARSE_FAILED``, ``GRAPHQL_VALIDATION_FAILED``, ``BAD_USER_INPUT``,
``QUERY_TOO_DEEP``, ...). A failure inside a resolver is shown by what it means: the admin API's own
errors with their message, a store outage as ``STORE_UNAVAILABLE``; anything else is logged with its
traceback and shown only as ``internal error``.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from sqlalchemy.exc import SQLAlchemyError

from fluxway.errors import GatewayError
from fluxway.store.usage import is_bad_data

log = logging.getLogger("fluxway.admin.graphql")

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_REQUEST = "BAD_REQUEST"  # the HTTP request itself: no query, bad JSON, an unknown operationName
BAD_USER_INPUT = "BAD_USER_INPUT"  # an argument or variable value
QUERY_TOO_LARGE = "QUERY_TOO_LARGE"
QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
OPERATION_NOT_SUPPORTED = "OPERATION_NOT_SUPPORTED"  # a mutation or subscription: the API is read-only
NOT_AVAILABLE = "NOT_AVAILABLE"  # a field whose feature this gateway does not have
NOT_FOUND = "NOT_FOUND"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"

_BY_STATUS = {400: BAD_USER_INPUT, 404: NOT_FOUND, 409: BAD_USER_INPUT, 413: BAD_USER_INPUT, 503: STORE_UNAVAILABLE}


def error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def bad_input(message: str, param: str | None = None) -> GraphQLError:
    return error(message, BAD_USER_INPUT, **({"param": param} if param else {}))


def _meaning(exc: Exception) -> tuple[str, dict[str, Any]]:
    """What a resolver's exception tells the client: a message and the extensions."""
    if isinstance(exc, GatewayError):
        ext: dict[str, Any] = {"code": _BY_STATUS.get(exc.status, INTERNAL_ERROR if exc.status >= 500 else
                                                      BAD_USER_INPUT)}
        if exc.param:
            ext["param"] = exc.param
        return exc.message, ext
    if isinstance(exc, SQLAlchemyError | OSError):
        if is_bad_data(exc):  # the values themselves were refused: the caller's input, not an outage
            log.warning("graphql: value refused by the store: %s", exc)
            return "a value in the query is out of range for the store", {"code": BAD_USER_INPUT}
        log.error("graphql: store error: %s", exc)
        return "the store is unavailable; retry shortly", {"code": STORE_UNAVAILABLE}
    log.error("graphql: internal error", exc_info=exc)
    return "internal error", {"code": INTERNAL_ERROR}


def formatted(err: GraphQLError, default_code: str) -> dict[str, Any]:
    """``err`` in the response shape; without a code of its own it gets ``default_code``."""
    out: dict[str, Any] = dict(err.formatted)
    original = err.original_error
    if original is not None and not isinstance(original, GraphQLError):
        out["message"], extensions = _meaning(original)
    else:
        extensions = dict(err.extensions or {})
        extensions.setdefault("code", default_code)
    out["extensions"] = extensions
    if out.get("locations") is None:
        out.pop("locations", None)
    if out.get("path") is None:
        out.pop("path", None)
    return out
