"""Anthropic errors: ``{"type": "error", "error": {"type", "message"}}`` bodies -> UpstreamError."""

from __future__ import annotations

from fluxway.adapters.base import Headers, kind_for_status, retry_after_seconds
from fluxway.adapters.toolkit import fallback_message, json_or_none
from fluxway.canonical import JSON, ErrorKind, UpstreamError

ERROR_KINDS = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.CONTEXT_LENGTH,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "timeout_error": ErrorKind.TIMEOUT,
    "api_error": ErrorKind.UPSTREAM_5XX,
    "overloaded_error": ErrorKind.OVERLOADED,
}


def error_from_anthropic(status: int, headers: Headers, body: bytes) -> UpstreamError:
    message = ""
    etype = ""
    parsed: JSON | None = None
    data = json_or_none(body)
    if isinstance(data, dict):
        parsed = data
        err = data.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            etype = str(err.get("type") or "")
        elif isinstance(err, str):
            message = err
    if not message:
        message = fallback_message(status, body)
    kind = ERROR_KINDS.get(etype) or kind_for_status(status, message, etype)
    generic = kind_for_status(status, message, etype)
    if kind is ErrorKind.BAD_REQUEST and generic is ErrorKind.CONTEXT_LENGTH:
        kind = ErrorKind.CONTEXT_LENGTH
    if kind is ErrorKind.RATE_LIMITED and isinstance(data, dict):
        details = data["error"].get("details") if isinstance(data.get("error"), dict) else None
        if isinstance(details, dict) and "spend_limit" in str(details.get("error_code") or ""):
            kind = ErrorKind.AUTH  # a spend limit: waiting will not help, another key or provider may
    return UpstreamError(kind, message, status=status, retry_after=retry_after_seconds(headers), body=parsed)
