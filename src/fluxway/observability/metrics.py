"""The numbers behind ``/metrics``, kept per runtime as plain counters and histograms.

A call is recorded once, when its outcome is known (:meth:`RequestStats.observe`, from the
inference handler): a few dict lookups and integer bumps, no metrics library, no locks (one event
loop per process). Label values come only from the config (public model names, provider names),
from the gateway's own fixed vocabularies (ingress, endpoint, status, rejection reasons), or are
a placeholder: a model name a client made up is counted as ``(none)``, a direct
``provider/model`` name as ``(direct)``, so client input never grows the series.

Modules still to come bump their own fields: the guardrails :attr:`RequestStats.guardrail_actions`
(``(guardrail name from config, action)``). The event outbox sets :attr:`RequestStats.sink_lag_s`
and :attr:`RequestStats.sink_backlog` and bumps ``sink_delivered``, ``sink_failed`` and
``sink_dropped`` (per configured sink name). A response cache sets
``outcome.cache`` to something other than ``off``/``miss`` on a hit, which counts it here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fluxway.observability.histogram import (
    LATENCY_BUCKETS,
    OVERHEAD_BUCKETS,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
)

if TYPE_CHECKING:
    from fluxway.policy.hooks import Outcome

# The error codes that mean "refused by a limit or a budget", and the reason label each becomes.
REJECTIONS: dict[str, str] = {
    "rate_limit_exceeded": "rate_limit",  # a key's or team's rpm / tpm
    "concurrency_limit_exceeded": "concurrency",  # a key's calls in flight (server.max_concurrency_per_key)
    "overloaded": "overloaded",  # the process's calls in flight (server.max_in_flight)
    "budget_exceeded": "budget",
    "model_unpriced": "budget_unpriced",  # a budgeted key asked for a model without a price
}
REJECTION_REASONS: tuple[str, ...] = tuple(dict.fromkeys(REJECTIONS.values()))

NO_PROVIDER = "(none)"  # refused or failed before any upstream answered
CACHE_PROVIDER = "(cache)"  # answered by the gateway's cache

CallKey = tuple[str, str, str, str, int]  # ingress, endpoint, model, provider, status
TargetKey = tuple[str, str, str]  # endpoint, model, provider


@dataclass(slots=True)
class TokenHistograms:
    input: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))
    output: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))


@dataclass(slots=True)
class RequestStats:
    """Per-runtime metrics. Every histogram's count doubles as the call counter of its labels."""

    # Whole-call duration; its count is the number of calls.
    calls: dict[CallKey, Histogram] = field(default_factory=dict)
    ttft: dict[TargetKey, Histogram] = field(default_factory=dict)  # streams' time to first token
    overhead: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (ingress, model)
    tokens: dict[TargetKey, TokenHistograms] = field(default_factory=dict)
    cost_usd: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, provider)
    rejections: Counter[str] = field(default_factory=Counter)  # REJECTIONS reasons
    cache_hits: Counter[str] = field(default_factory=Counter)  # model
    # Bumped by the guardrails (to come): (guardrail name, action) -> count.
    guardrail_actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Set by the event outbox, per configured sink: age of the oldest undelivered event
    # (0 when caught up) and how many are waiting.
    sink_lag_s: dict[str, float] = field(default_factory=dict)
    sink_backlog: dict[str, int] = field(default_factory=dict)
    # Bumped by the outbox (fluxway.events.outbox), per sink: events delivered, deliveries that
    # failed (each failed try), events dropped (backlog over max_backlog, or the queue full).
    sink_delivered: Counter[str] = field(default_factory=Counter)
    sink_failed: Counter[str] = field(default_factory=Counter)
    sink_dropped: Counter[str] = field(default_factory=Counter)
    # MCP tool calls (fluxway.mcp.service): (server, tool, status) -> duration, for tools that were
    # configured or discovered only; calls refused before reaching a tool, by reason.
    mcp_calls: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    mcp_rejections: Counter[str] = field(default_factory=Counter)

    def observe_tool_call(self, server: str, tool: str, status: str, seconds: float) -> None:
        key = (server, tool, status)
        h = self.mcp_calls.get(key)
        if h is None:
            h = self.mcp_calls[key] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)

    def observe(self, ingress: str, endpoint: str, model: str, outcome: Outcome, cost_usd: float) -> None:
        """Record one finished call (``model``: already a configured name or a placeholder)."""
        target = outcome.target
        cached = False
        if target is not None:
            provider = target.provider
        elif outcome.cache != "off" and outcome.cache != "miss":
            provider = CACHE_PROVIDER
            cached = True
        else:
            provider = NO_PROVIDER
        key = (ingress, endpoint, model, provider, outcome.status)
        h = self.calls.get(key)
        if h is None:
            h = self.calls[key] = Histogram(LATENCY_BUCKETS)
        h.observe(outcome.latency_ms / 1000.0)
        if outcome.overhead_ms is not None:
            okey = (ingress, model)
            h = self.overhead.get(okey)
            if h is None:
                h = self.overhead[okey] = Histogram(OVERHEAD_BUCKETS)
            h.observe(max(outcome.overhead_ms, 0.0) / 1000.0)
        if outcome.ttft_ms is not None:
            tkey = (endpoint, model, provider)
            h = self.ttft.get(tkey)
            if h is None:
                h = self.ttft[tkey] = Histogram(TTFT_BUCKETS)
            h.observe(outcome.ttft_ms / 1000.0)
        usage = outcome.usage
        if usage is not None:
            tkey = (endpoint, model, provider)
            th = self.tokens.get(tkey)
            if th is None:
                th = self.tokens[tkey] = TokenHistograms()
            th.input.observe(usage.prompt_tokens)
            th.output.observe(usage.completion_tokens)
        if cost_usd:
            ckey = (model, provider)
            self.cost_usd[ckey] = self.cost_usd.get(ckey, 0.0) + cost_usd
        if cached:
            self.cache_hits[model] += 1
        err = outcome.error
        if err is not None and err.code is not None:
            reason = REJECTIONS.get(err.code)
            if reason is not None:
                self.rejections[reason] += 1
