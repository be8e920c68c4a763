"""Gemini errors: ``{"error": {"code", "message", "status", "details"}}`` bodies -> UpstreamError."""

from __future__ import annotations

from fluxway.adapters.base import Headers, kind_for_status, retry_after_seconds
from fluxway.adapters.gemini.wire import pick
from fluxway.adapters.toolkit import fallback_message, json_or_none
from fluxway.canonical import JSON, ErrorKind, UpstreamError

STATUS_KINDS = {
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "INTERNAL": ErrorKind.UPSTREAM_5XX,
    "UNKNOWN": ErrorKind.UPSTREAM_5XX,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    # e.g. "free tier not available in your country": another key or provider may work.
    "FAILED_PRECONDITION": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "INVALID_ARGUMENT": ErrorKind.BAD_REQUEST,
}


def _retry_delay(error: JSON) -> float | None:
    details = error.get("details")
    for d in details if isinstance(details, list) else []:
        delay = pick(d, "retryDelay", "retry_delay")
        if isinstance(d, dict) and isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def error_from_gemini(status: int, headers: Headers, body: bytes) -> UpstreamError:
    data = json_or_none(body)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # the non-SSE stream endpoint wraps its error in an array
    err: JSON = data["error"] if isinstance(data, dict) and isinstance(data.get("error"), dict) else {}
    message = str(err.get("message") or "") or fallback_message(status, body)
    gstatus = str(err.get("status") or "")
    if isinstance(err.get("code"), int) and status < 400:
        status = err["code"]
    kind = STATUS_KINDS.get(gstatus) or kind_for_status(status, message, gstatus)
    lowered = message.lower()
    if kind is ErrorKind.BAD_REQUEST:
        if "api key" in lowered or "API_KEY_INVALID" in str(err.get("details")):
            kind = ErrorKind.AUTH
        elif ("token" in lowered and "exceed" in lowered) or kind_for_status(
            status, message
        ) is ErrorKind.CONTEXT_LENGTH:
            kind = ErrorKind.CONTEXT_LENGTH
    retry_after = retry_after_seconds(headers)
    if retry_after is None:
        retry_after = _retry_delay(err)
    return UpstreamError(
        kind, message, status=status, retry_after=retry_after, body=data if isinstance(data, dict) else None
    )
