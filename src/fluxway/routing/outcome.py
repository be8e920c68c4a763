"""What a routed call's attempts produced: its :class:`Trace`, its answer, or the error for the caller
when every attempt failed (:func:`failure`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fluxway.canonical import CanonicalResponse, ErrorKind, Target, UpstreamError
from fluxway.errors import GatewayError

if TYPE_CHECKING:
    from fluxway.tracing.spans import CallSpan


@dataclass(slots=True)
class Trace:
    """What the attempts of one call did (for headers, errors and usage records)."""

    attempts: int = 0
    planned: int = 0  # targets planned that support the endpoint
    upstream_s: float = 0.0
    tried: list[str] = field(default_factory=list)
    errors: list[UpstreamError] = field(default_factory=list)
    span: CallSpan | None = None  # the call's trace span (tracing on): attempts become its children


@dataclass(slots=True)
class Completed:
    response: CanonicalResponse
    target: Target
    trace: Trace


def failure(model: str, trace: Trace) -> GatewayError:
    """The answer to the caller of public model ``model`` when every attempt failed."""
    if not trace.errors:
        if not trace.planned:
            return GatewayError(
                400,
                f"no target of model '{model}' supports this endpoint",
                param="model",
                code="unsupported_endpoint",
            )
        return GatewayError(
            503,
            f"every target of model '{model}' is unavailable (circuit open); retry shortly",
            type="server_error",
            code="no_healthy_target",
            headers={"retry-after": "1"},
        )
    last = trace.errors[-1]
    tried = "; ".join(f"{e.target}: {e.kind.value} ({e.message})" for e in trace.errors)
    if last.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_LENGTH, ErrorKind.CONTENT_FILTER) and last.status:
        code = {
            ErrorKind.CONTEXT_LENGTH: "context_length_exceeded",
            ErrorKind.CONTENT_FILTER: "content_filter",
        }.get(last.kind, "upstream_bad_request")
        param = None
        if last.body and isinstance(last.body.get("error"), dict):
            param = last.body["error"].get("param")
        return GatewayError(
            last.status if 400 <= last.status < 500 else 400,
            f"{last.target}: {last.message}",
            code=code,
            param=param if isinstance(param, str) else None,
        )
    if last.kind is ErrorKind.RATE_LIMITED:
        retry_after = last.retry_after if last.retry_after is not None else 1.0
        return GatewayError(
            429,
            f"every target of model '{model}' is rate limited: {tried}",
            type="rate_limit_error",
            code="upstream_rate_limited",
            headers={"retry-after": str(max(1, int(retry_after + 0.999)))},
        )
    if all(e.kind is ErrorKind.TIMEOUT for e in trace.errors):
        return GatewayError(
            504, f"every target of model '{model}' timed out: {tried}", type="server_error", code="timeout"
        )
    return GatewayError(
        502,
        f"every target of model '{model}' failed: {tried}",
        type="server_error",
        code="upstream_error",
    )
