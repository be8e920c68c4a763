"""What a pass-through call cost (images, speech, transcriptions, rerank): pure functions.

Images are priced per image (``targets[].price.per_image``), speech per million characters of its
input (``per_mchar``), transcriptions per second of audio (``per_audio_second``, from the answer's
``usage.seconds`` or ``duration``); an answer that reports tokens (``gpt-image-1``,
``gpt-4o-transcribe``, rerank's ``usage``) is priced by its tokens when the model has a token price.
Otherwise the call is recorded at cost 0 with ``price_known`` false.
"""

from __future__ import annotations

from typing import Any

from fluxway.canonical import JSON, Endpoint, Target, Usage
from fluxway.policy.pricing import CallCost, Pricer, cost_usd


def free() -> CallCost:
    """File and batch operations, and failed calls: nothing to charge."""
    return CallCost(0.0, True, None, False)


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def answer_usage(endpoint: Endpoint, answer: JSON | None) -> Usage | None:
    """Tokens an answer reports (OpenAI's images/transcriptions ``usage``, a rerank's ``usage`` or
    Cohere's ``meta.billed_units``), else None."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if isinstance(usage, dict):
        if usage.get("type") == "duration":
            return None
        prompt = _int(usage.get("input_tokens")) or _int(usage.get("prompt_tokens")) or _int(usage.get("total_tokens"))
        out = _int(usage.get("output_tokens")) or _int(usage.get("completion_tokens"))
        if prompt or out:
            return Usage(prompt_tokens=prompt, completion_tokens=out)
    meta = answer.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    if isinstance(billed, dict):
        n = _int(billed.get("input_tokens")) or _int(billed.get("search_units"))
        if n:
            return Usage(prompt_tokens=n)
    return None


def audio_seconds(answer: JSON | None) -> float | None:
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        v = usage.get("seconds")
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    v = answer.get("duration")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def media_cost(pricer: Pricer, endpoint: Endpoint, target: Target, request: JSON, answer: JSON | None) -> CallCost:
    """One pass-through call's cost, from its price and what its answer reports."""
    info = pricer.for_target(target)
    price = info.price
    usage = answer_usage(endpoint, answer)
    if endpoint is Endpoint.IMAGES and price.per_image is not None:
        data = answer.get("data") if isinstance(answer, dict) else None
        n = len(data) if isinstance(data, list) else 0
        return CallCost(n * price.per_image, True, usage, False)
    if endpoint is Endpoint.SPEECH and price.per_mchar is not None:
        text = request.get("input")
        chars = len(text) if isinstance(text, str) else 0
        return CallCost(chars * price.per_mchar / 1_000_000, True, usage, False)
    if endpoint is Endpoint.TRANSCRIPTIONS and price.per_audio_second is not None:
        seconds = audio_seconds(answer)
        if seconds is not None:
            return CallCost(seconds * price.per_audio_second, True, usage, False)
    if usage is not None and info.known and (price.input_per_mtok or price.output_per_mtok):
        return CallCost(cost_usd(price, usage), True, usage, False)
    return CallCost(0.0, False, usage, False)
