"""Prometheus text exposition, rendered at scrape time from the numbers the runtime keeps.

Nothing on the request path touches a metrics library: calls bump plain numbers
(:mod:`fluxway.observability.metrics`, the executor's counters, the health board) and this module
turns them into the text format when ``/metrics`` is read. The OpenTelemetry GenAI series
(``gen_ai_*``) are the ``fluxway_*`` histograms aggregated here to the GenAI attributes, so they
cost the request path nothing extra. docs/metrics.md lists every family (a test keeps it true).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fluxway.observability.histogram import Histogram
from fluxway.observability.metrics import REJECTION_REASONS, RequestStats
from fluxway.routing.breaker import BreakerState

if TYPE_CHECKING:
    from fluxway.runtime import Runtime

Labels = tuple[tuple[str, str], ...]

_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# gen_ai.operation.name per endpoint.
_OPERATION = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# gen_ai.provider.name per provider type (OpenTelemetry's well-known values); other types as they are.
_GENAI_PROVIDER = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(v) if v == v and v not in (float("inf"), float("-inf")) else ("+Inf" if v > 0 else "-Inf")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def scalar(self, name: str, kind: str, help_: str, value: float) -> None:
        self.family(name, kind, help_)
        self.sample(name, (), value)

    def histograms(self, name: str, help_: str, series: Iterable[tuple[Labels, Histogram]]) -> None:
        self.family(name, "histogram", help_)
        for labels, h in series:
            running = 0
            for bound, n in zip(h.bounds, h.counts, strict=False):
                running += n
                self.sample(f"{name}_bucket", (*labels, ("le", repr(float(bound)))), running)
            running += h.counts[-1]
            self.sample(f"{name}_bucket", (*labels, ("le", "+Inf")), running)
            self.sample(f"{name}_sum", labels, h.sum)
            self.sample(f"{name}_count", labels, running)

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def _aggregate(series: Iterable[tuple[Labels, Histogram]]) -> list[tuple[Labels, Histogram]]:
    """Histograms summed per label set (for series aggregated at scrape time)."""
    out: dict[Labels, Histogram] = {}
    for labels, h in series:
        acc = out.get(labels)
        if acc is None:
            acc = out[labels] = Histogram(h.bounds)
        acc.merge(h)
    return sorted(out.items())


def _sum(items: Iterable[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
    out: dict[Labels, float] = {}
    for labels, v in items:
        out[labels] = out.get(labels, 0) + v
    return sorted(out.items())


def render(rt: Runtime) -> bytes:
    w = _Writer()
    stats = rt.stats
    genai = {p.name: _GENAI_PROVIDER.get(p.type, p.type) for p in rt.cfg.providers}

    def gen_ai_provider(provider: str) -> str:
        return genai.get(provider, provider)  # placeholders ("(none)", "(cache)") as they are

    calls = sorted(stats.calls.items())
    # Calls ---------------------------------------------------------------------------------
    w.family("fluxway_requests_total", "counter", "Inference requests answered, by ingress, model and status.")
    for labels, n in _sum(
        ((("ingress", i), ("model", m), ("status", str(s))), h.count) for (i, _e, m, _p, s), h in calls
    ):
        w.sample("fluxway_requests_total", labels, n)
    w.histograms(
        "fluxway_request_duration_seconds",
        "Whole-call duration as the client saw it, by ingress, endpoint, model, provider and status.",
        (
            ((("ingress", i), ("endpoint", e), ("model", m), ("provider", p), ("status", str(s))), h)
            for (i, e, m, p, s), h in calls
        ),
    )
    ttft = sorted(stats.ttft.items())
    w.histograms(
        "fluxway_time_to_first_token_seconds",
        "Streams: time from the request's arrival to the first token sent, by endpoint, model and provider.",
        (((("endpoint", e), ("model", m), ("provider", p)), h) for (e, m, p), h in ttft),
    )
    w.histograms(
        "fluxway_overhead_seconds",
        "Time the gateway added before the answer began (x-fluxway-overhead-ms), by ingress and model.",
        (((("ingress", i), ("model", m)), h) for (i, m), h in sorted(stats.overhead.items())),
    )
    tokens = sorted(stats.tokens.items())
    w.family("fluxway_tokens_total", "counter", "Tokens by public model and kind (prompt, completion).")
    prompt = _sum(((("model", m), ("kind", "prompt")), int(t.input.sum)) for (_e, m, _p), t in tokens)
    completion = _sum(((("model", m), ("kind", "completion")), int(t.output.sum)) for (_e, m, _p), t in tokens)
    for labels, n in prompt + completion:
        w.sample("fluxway_tokens_total", labels, n)
    w.family("fluxway_cost_usd_total", "counter",
             "Spend in US dollars at the configured or shipped prices, by model and provider.")
    for (m, p), usd in sorted(stats.cost_usd.items()):
        w.sample("fluxway_cost_usd_total", (("model", m), ("provider", p)), usd)
    w.scalar("fluxway_in_flight", "gauge", "Requests in flight in this process.", rt.in_flight)

    # OpenTelemetry GenAI -------------------------------------------------------------------
    w.histograms(
        "gen_ai_server_request_duration_seconds",
        "GenAI server request duration (gen_ai.server.request.duration), by operation, provider, model, error.",
        _aggregate(
            (
                (
                    ("gen_ai_operation_name", _OPERATION.get(e, e)),
                    ("gen_ai_provider_name", gen_ai_provider(p)),
                    ("gen_ai_request_model", m),
                    *((("error_type", str(s)),) if s >= 400 else ()),
                ),
                h,
            )
            for (_i, e, m, p, s), h in calls
        ),
    )
    w.histograms(
        "gen_ai_server_time_to_first_token_seconds",
        "GenAI time to first token (gen_ai.server.time_to_first_token) of streams, by operation, provider, model.",
        _aggregate(
            (
                (
                    ("gen_ai_operation_name", _OPERATION.get(e, e)),
                    ("gen_ai_provider_name", gen_ai_provider(p)),
                    ("gen_ai_request_model", m),
                ),
                h,
            )
            for (e, m, p), h in ttft
        ),
    )

    def token_series() -> Iterable[tuple[Labels, Histogram]]:
        for (e, m, p), t in tokens:
            base = (
                ("gen_ai_operation_name", _OPERATION.get(e, e)),
                ("gen_ai_provider_name", gen_ai_provider(p)),
                ("gen_ai_request_model", m),
            )
            yield (*base, ("gen_ai_token_type", "input")), t.input
            yield (*base, ("gen_ai_token_type", "output")), t.output

    w.histograms(
        "gen_ai_client_token_usage",
        "GenAI tokens per call (gen_ai.client.token.usage), by operation, provider, model and token type.",
        _aggregate(token_series()),
    )

    # Routing -------------------------------------------------------------------------------
    c = rt.executor.counters
    for name, value, help_ in (
        ("fluxway_upstream_attempts_total", c.attempts, "Upstream attempts made."),
        ("fluxway_upstream_failures_total", c.failures, "Upstream attempts that failed."),
        ("fluxway_retries_total", c.retries, "Attempts repeated at the target that just failed."),
        ("fluxway_failovers_total", c.failovers,
         "Attempts moved to another target or fallback model after a failure."),
        ("fluxway_hedges_total", c.hedges, "Hedged requests started."),
        ("fluxway_hedge_wins_total", c.hedge_wins, "Hedged requests that answered first."),
        ("fluxway_stream_failovers_total", c.stream_failovers, "Streams continued on another target."),
    ):
        w.scalar(name, "counter", help_, value)
    # Configured targets only: direct names chosen by clients never become label values.
    snap = rt.executor.board.snapshot(rt.executor.configured_targets)
    w.family("fluxway_target_breaker_state", "gauge", "Circuit state per target: 0 closed, 1 half-open, 2 open.")
    ewma: list[tuple[str, float]] = []
    for key in sorted(snap.targets):
        t = snap.targets[key]
        w.sample("fluxway_target_breaker_state", (("target", key),), _STATE_VALUE[t.state])
        if t.ewma_ttfb_s is not None:
            ewma.append((key, t.ewma_ttfb_s))
    w.family("fluxway_target_ttfb_ewma_seconds", "gauge", "EWMA of time to first byte per target.")
    for key, v in ewma:
        w.sample("fluxway_target_ttfb_ewma_seconds", (("target", key),), round(v, 6))

    # Policy --------------------------------------------------------------------------------
    w.family("fluxway_rejections_total", "counter",
             "Calls refused by a rate or concurrency limit, the in-flight cap, or a budget, by reason.")
    for reason in REJECTION_REASONS:
        w.sample("fluxway_rejections_total", (("reason", reason),), stats.rejections[reason])
    w.family("fluxway_cache_hits_total", "counter", "Calls answered from the response cache, by model.")
    models = dict.fromkeys(rt.executor.public_models)
    models.update(dict.fromkeys(sorted(stats.cache_hits)))
    for m in models:
        w.sample("fluxway_cache_hits_total", (("model", m),), stats.cache_hits[m])
    w.family("fluxway_guardrail_actions_total", "counter", "Guardrail actions taken, by guardrail and action.")
    for (g, a), n in sorted(stats.guardrail_actions.items()):
        w.sample("fluxway_guardrail_actions_total", (("guardrail", g), ("action", a)), n)
    usage = rt.governance.usage
    w.scalar("fluxway_usage_quarantined_total", "counter", "Usage records or spool lines set aside, unstorable.",
             usage.quarantine.count)
    w.scalar("fluxway_usage_pending_records", "gauge",
             "Usage records spooled by this process and not yet in the store.", usage.pending)
    w.scalar("fluxway_usage_spilled_total", "counter",
             "Usage records left to the spool file, not memory, while the store was behind (usage.max_in_memory).",
             usage.spilled)
    w.scalar("fluxway_usage_bodies_dropped_total", "counter",
             "Usage records stored without bodies because the flush was behind (logs.body_backlog_mb).",
             usage.bodies_dropped)
    _sinks(w, stats)
    _alerts(w, rt)
    _mcp(w, rt)
    if rt.tracer is not None:
        counts = rt.tracer.sink.counts()
        w.family("fluxway_trace_spans_total", "counter",
                 "Spans by export outcome: exported (accepted by the collector), dropped (queue full), failed.")
        for outcome in ("exported", "dropped", "failed"):
            w.sample("fluxway_trace_spans_total", (("outcome", outcome),), counts.get(outcome, 0))
        w.scalar("fluxway_trace_spans_queued", "gauge", "Spans waiting for export.", counts.get("queued", 0))
    health = rt.governance.redis_health
    if health is not None:
        w.scalar("fluxway_redis_up", "gauge",
                 "1 while Redis answers this process's budget and rate-limit calls, else 0.", 1 if health.up else 0)
        w.scalar("fluxway_redis_outages_total", "counter", "Times Redis went from answering to not answering.",
                 health.outages)
        w.family("fluxway_redis_fallback_total", "counter",
                 "Hook calls served on per-process state while Redis was down (redis.on_failure: open).")
        for what in ("budget", "limits"):
            w.sample("fluxway_redis_fallback_total", (("hook", what),), health.fallbacks[what])
        w.scalar("fluxway_redis_refused_total", "counter",
                 "Calls answered 503 redis_unavailable while Redis was down (redis.on_failure: closed).",
                 health.refused)
    return w.text()


def _sinks(w: _Writer, stats: RequestStats) -> None:
    lag, backlog = stats.sink_lag_s, stats.sink_backlog
    w.family("fluxway_event_sink_lag_seconds", "gauge",
             "Age of the oldest event not yet delivered to a sink (0 when caught up), by sink.")
    for sink, v in sorted(lag.items()):
        w.sample("fluxway_event_sink_lag_seconds", (("sink", sink),), v)
    w.family("fluxway_event_sink_backlog", "gauge", "Events waiting for delivery to a sink, by sink.")
    for sink, n in sorted(backlog.items()):
        w.sample("fluxway_event_sink_backlog", (("sink", sink),), n)
    for name, help_, counts in (
        ("fluxway_event_sink_delivered_total", "Events delivered to a sink, by sink.", stats.sink_delivered),
        ("fluxway_event_sink_failed_total", "Event deliveries that failed (each failed try), by sink.",
         stats.sink_failed),
        ("fluxway_event_sink_dropped_total",
         "Events dropped undelivered (a sink's backlog over its max_backlog, or the queue full), by sink.",
         stats.sink_dropped),
    ):
        w.family(name, "counter", help_)
        for sink, n in sorted(counts.items()):
            w.sample(name, (("sink", sink),), n)


def _mcp(w: _Writer, rt: Runtime) -> None:
    """MCP tool calls and servers (label values: configured servers and their discovered tools)."""
    stats = rt.stats
    w.histograms(
        "fluxway_mcp_tool_call_duration_seconds",
        "MCP tool calls (/mcp and tool loops) by server, tool and status (ok, tool_error, upstream_error,"
        " unavailable, timeout); the count is the number of calls.",
        (((("server", sv), ("tool", t), ("status", st)), h) for (sv, t, st), h in sorted(stats.mcp_calls.items())),
    )
    w.family("fluxway_mcp_rejections_total", "counter",
             "MCP tool calls refused before reaching a tool, by reason (unknown_tool, forbidden_tool, rate_limited).")
    for reason in ("unknown_tool", "forbidden_tool", "rate_limited"):
        w.sample("fluxway_mcp_rejections_total", (("reason", reason),), stats.mcp_rejections[reason])
    service = rt.mcp
    if service is None or not service.upstreams:
        return
    w.family("fluxway_mcp_server_up", "gauge", "1 while a configured MCP server is connected, else 0.")
    for s in service.upstreams:
        w.sample("fluxway_mcp_server_up", (("server", s.name),), 1 if s.up else 0)
    w.family("fluxway_mcp_server_tools", "gauge", "Tools a configured MCP server offers now.")
    for s in service.upstreams:
        w.sample("fluxway_mcp_server_tools", (("server", s.name),), len(s.tools()))
    w.family("fluxway_mcp_server_failures_total", "counter",
             "Failed connection attempts and lost sessions of a configured MCP server.")
    for s in service.upstreams:
        w.sample("fluxway_mcp_server_failures_total", (("server", s.name),), s.failures)


def _alerts(w: _Writer, rt: Runtime) -> None:
    """Per configured alert rule (label values from the config only)."""
    engine = rt.alerts
    w.family("fluxway_alerts_firing", "gauge", "Subjects an alert rule is firing for (from the shared store), by rule.")
    if engine is not None:
        for rule, n in engine.firing.items():
            w.sample("fluxway_alerts_firing", (("rule", rule),), n)
    w.family("fluxway_alert_transitions_total", "counter",
             "Alerts this process fired or resolved, by rule and kind (fired, resolved).")
    if engine is not None:
        for rule in engine.rules:
            for kind in ("fired", "resolved"):
                w.sample("fluxway_alert_transitions_total", (("rule", rule), ("kind", kind)),
                         engine.transitions[(rule, kind)])
