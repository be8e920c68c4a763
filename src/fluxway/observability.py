"""Prometheus metrics rendered at scrape time from counters the runtime already keeps.

Nothing on the request path touches a metrics library: the pipeline bumps plain integers and this
module turns them into the text exposition format when ``/metrics`` is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fluxway.routing.breaker import BreakerState

if TYPE_CHECKING:
    from fluxway.runtime import Runtime


@dataclass(slots=True)
class RequestStats:
    """Per-runtime request counters, keyed by (ingress, public model, status)."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def render(rt: Runtime) -> bytes:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    metric("fluxway_requests_total", "counter", "Inference requests answered, by ingress, model and status.")
    for (ingress, model, status), n in sorted(rt.stats.requests.items()):
        lines.append(
            f'fluxway_requests_total{{ingress="{ingress}",model="{_label(model)}",status="{status}"}} {n}'
        )
    metric("fluxway_tokens_total", "counter", "Tokens by public model and kind (prompt, completion).")
    for model, n in sorted(rt.stats.prompt_tokens.items()):
        lines.append(f'fluxway_tokens_total{{model="{_label(model)}",kind="prompt"}} {n}')
    for model, n in sorted(rt.stats.completion_tokens.items()):
        lines.append(f'fluxway_tokens_total{{model="{_label(model)}",kind="completion"}} {n}')
    c = rt.executor.counters
    for name, value, help_ in (
        ("fluxway_upstream_attempts_total", c.attempts, "Upstream attempts made."),
        ("fluxway_upstream_failures_total", c.failures, "Upstream attempts that failed."),
        ("fluxway_hedges_total", c.hedges, "Hedged requests started."),
        ("fluxway_hedge_wins_total", c.hedge_wins, "Hedged requests that answered first."),
        ("fluxway_stream_failovers_total", c.stream_failovers, "Streams continued on another target."),
    ):
        metric(name, "counter", help_)
        lines.append(f"{name} {value}")
    metric("fluxway_usage_quarantined_total", "counter", "Usage records or spool lines set aside, unstorable.")
    lines.append(f"fluxway_usage_quarantined_total {rt.governance.usage.quarantine.count}")
    metric("fluxway_in_flight", "gauge", "Requests in flight in this process.")
    lines.append(f"fluxway_in_flight {rt.in_flight}")
    # Configured targets only: direct names chosen by clients never become label values.
    snap = rt.executor.board.snapshot(rt.executor.configured_targets)
    metric("fluxway_target_breaker_state", "gauge", "Circuit state per target: 0 closed, 1 half-open, 2 open.")
    metric("fluxway_target_ttfb_ewma_seconds", "gauge", "EWMA of time to first byte per target.")
    for key in sorted(snap.targets):
        t = snap.targets[key]
        lines.append(f'fluxway_target_breaker_state{{target="{_label(key)}"}} {_STATE_VALUE[t.state]}')
        if t.ewma_ttfb_s is not None:
            lines.append(f'fluxway_target_ttfb_ewma_seconds{{target="{_label(key)}"}} {t.ewma_ttfb_s:.6f}')
    health = rt.governance.redis_health
    if health is not None:
        metric("fluxway_redis_up", "gauge", "1 while Redis answers this process's budget and rate-limit calls, else 0.")
        lines.append(f"fluxway_redis_up {1 if health.up else 0}")
        metric("fluxway_redis_outages_total", "counter", "Times Redis went from answering to not answering.")
        lines.append(f"fluxway_redis_outages_total {health.outages}")
        metric("fluxway_redis_fallback_total", "counter",
               "Hook calls served on per-process state while Redis was down (redis.on_failure: open).")
        for what in ("budget", "limits"):
            lines.append(f'fluxway_redis_fallback_total{{hook="{what}"}} {health.fallbacks[what]}')
        metric("fluxway_redis_refused_total", "counter",
               "Calls answered 503 redis_unavailable while Redis was down (redis.on_failure: closed).")
        lines.append(f"fluxway_redis_refused_total {health.refused}")
    return ("\n".join(lines) + "\n").encode()
