"""Capping a call to what its budget can still pay for, instead of refusing it.

When a call's worst case (its whole output limit at the most expensive price it may reach) does not
fit what is left of a budget, the budget hook lowers the output limit sent upstream to what the rest
pays for; only a call that cannot afford its prompt and :data:`MIN_CAPPED_OUTPUT` tokens is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fluxway.canonical import Endpoint, Usage
from fluxway.policy.hooks import CallContext
from fluxway.policy.pricing import PriceInfo, cost_usd

# A call is capped rather than refused only if at least this many output tokens remain affordable.
MIN_CAPPED_OUTPUT = 16


def _n(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def affordable_output(ctx: CallContext, info: PriceInfo, usage: Usage, left_usd: float) -> int | None:
    """The output tokens (per choice) that ``left_usd`` (what the refusing budget has left) pays for
    after the prompt; None when capping cannot help (no output to cap, output free, too little left)."""
    if ctx.request.endpoint is Endpoint.EMBEDDINGS or usage.completion_tokens <= 0:
        return None
    per_token = info.price.output_per_mtok / 1_000_000
    if per_token <= 0:
        return None
    prompt = cost_usd(info.price, Usage(prompt_tokens=usage.prompt_tokens))
    n = _n(ctx.request.body)
    cap = math.floor((left_usd - prompt) / (per_token * n))
    if cap < MIN_CAPPED_OUTPUT or cap * n >= usage.completion_tokens:
        return None
    return cap


def cap_output(ctx: CallContext, usage: Usage, cap: int) -> Usage:
    """Send the upstream ``cap`` as the call's output limit (the field the caller used, else the
    endpoint's own) and say so in ``x-fluxway-budget-capped``; returns the capped worst case."""
    body = ctx.request.body
    if "max_completion_tokens" in body or ("max_tokens" not in body and ctx.request.endpoint is Endpoint.CHAT):
        body["max_completion_tokens"] = cap
        body.pop("max_tokens", None)
    else:
        body["max_tokens"] = cap
    ctx.response_headers["x-fluxway-budget-capped"] = str(cap)
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=cap * _n(body))
