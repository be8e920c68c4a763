"""The one line per call (``observability.logs.requests``), with its fields for JSON logs."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fluxway.log_format import trace_id
from fluxway.policy.hooks import CallContext, Outcome


def log_call(
    log: logging.Logger, request_id: str, headers: Mapping[str, str], ctx: CallContext | None, outcome: Outcome
) -> None:
    """Log a finished call at INFO: who, which model and provider, its status and latencies."""
    if not log.isEnabledFor(logging.INFO):
        return
    p = ctx.principal if ctx is not None else None
    target = outcome.target
    total = round(outcome.latency_ms, 3)
    upstream = round(outcome.upstream_ms, 3)
    fields = {
        "request_id": request_id,
        "trace_id": trace_id(headers.get("traceparent")),
        "key_id": p.id if p is not None else None,
        "model": ctx.request.model if ctx is not None else None,
        "provider": target.provider if target is not None else None,
        "status": outcome.status,
        "latency_ms": total,
        "upstream_ms": upstream,
        "overhead_ms": round(max(total - upstream, 0.0), 3),
        "ttft_ms": None if outcome.ttft_ms is None else round(outcome.ttft_ms, 3),
        "attempts": outcome.attempts,
        "cache": outcome.cache,
    }
    log.info("request %s %s %s -> %s in %.1f ms", request_id, fields["model"], fields["provider"], outcome.status,
             total, extra=fields)
