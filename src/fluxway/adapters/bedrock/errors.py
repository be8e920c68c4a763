"""Bedrock errors: AWS error types (``x-amzn-errortype``, ``__type``, ``:exception-type``) -> kinds."""

from __future__ import annotations

from fluxway.adapters.base import Headers, kind_for_status, retry_after_seconds
from fluxway.adapters.toolkit import fallback_message, json_or_none
from fluxway.canonical import JSON, ErrorKind, UpstreamError

# AWS error type (from x-amzn-errortype, __type or :exception-type, lower-cased, no "exception") -> kind
ERROR_TYPES = {
    "throttling": ErrorKind.RATE_LIMITED,
    "servicequotaexceeded": ErrorKind.RATE_LIMITED,
    "toomanyrequests": ErrorKind.RATE_LIMITED,
    "modelnotready": ErrorKind.OVERLOADED,
    "serviceunavailable": ErrorKind.OVERLOADED,
    "modeltimeout": ErrorKind.TIMEOUT,
    "internalserver": ErrorKind.UPSTREAM_5XX,
    "internalfailure": ErrorKind.UPSTREAM_5XX,
    "modelerror": ErrorKind.UPSTREAM_5XX,
    "modelstreamerror": ErrorKind.UPSTREAM_5XX,
    "accessdenied": ErrorKind.AUTH,
    "unrecognizedclient": ErrorKind.AUTH,
    "invalidsignature": ErrorKind.AUTH,
    "incompletesignature": ErrorKind.AUTH,
    "expiredtoken": ErrorKind.AUTH,
    "missingauthenticationtoken": ErrorKind.AUTH,
    "invalidclienttokenid": ErrorKind.AUTH,
    "resourcenotfound": ErrorKind.NOT_FOUND,
}
CONTEXT_HINTS = ("too long", "context", "too many tokens", "too many input tokens")


def error_kind(error_type: str, message: str, status: int) -> ErrorKind:
    key = error_type.split(":", 1)[0].split("#")[-1].strip().lower()
    key = key.removesuffix("exception")
    if key == "validation":
        text = message.lower()
        return ErrorKind.CONTEXT_LENGTH if any(h in text for h in CONTEXT_HINTS) else ErrorKind.BAD_REQUEST
    if key in ERROR_TYPES:
        return ERROR_TYPES[key]
    return kind_for_status(status, message)


def bedrock_error(status: int, headers: Headers, body: bytes) -> UpstreamError:
    parsed: JSON | None = None
    message = ""
    error_type = headers.get("x-amzn-errortype") or headers.get("X-Amzn-ErrorType") or ""
    data = json_or_none(body)
    if isinstance(data, dict):
        parsed = data
        message = str(data.get("message") or data.get("Message") or "")
        error_type = error_type or str(data.get("__type") or data.get("code") or "")
    if not message:
        message = fallback_message(status, body)
    kind = error_kind(error_type, message, status)
    name = error_type.split(":", 1)[0].split("#")[-1]
    return UpstreamError(
        kind,
        f"{name}: {message}" if name else message,
        status=status,
        retry_after=retry_after_seconds(headers),
        body=parsed,
    )
