"""Prices of the pass-through endpoints: per image, per character, per second, else tokens, else unknown."""

from __future__ import annotations

import pytest

from fluxway.canonical import Endpoint, Price, Target
from fluxway.config import parse
from fluxway.policy.media_cost import answer_usage, media_cost
from fluxway.policy.pricing import Pricer

CFG = parse({"providers": [{"name": "up", "type": "openai", "api_keys": ["k"]}],
             "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}]}, {})
PRICER = Pricer(CFG)


def _t(model: str, **price: float) -> Target:
    return Target("up", model, price=Price(**price) if price else None)  # type: ignore[arg-type]


def test_images_per_image_speech_per_character_transcriptions_per_second() -> None:
    images = media_cost(PRICER, Endpoint.IMAGES, _t("dall-e-3", per_image=0.04), {}, {"data": [{}, {}, {}]})
    assert images.usd == pytest.approx(0.12) and images.known
    speech = media_cost(PRICER, Endpoint.SPEECH, _t("tts-1", per_mchar=15.0), {"input": "x" * 1000}, None)
    assert speech.usd == pytest.approx(0.015) and speech.known
    stt = media_cost(PRICER, Endpoint.TRANSCRIPTIONS, _t("whisper-1", per_audio_second=0.0001), {},
                     {"text": "", "usage": {"type": "duration", "seconds": 60}})
    assert stt.usd == pytest.approx(0.006)
    verbose = media_cost(PRICER, Endpoint.TRANSCRIPTIONS, _t("whisper-1", per_audio_second=0.0001), {},
                         {"text": "", "duration": 10.0})
    assert verbose.usd == pytest.approx(0.001)


def test_tokens_when_the_answer_has_them_and_unknown_otherwise() -> None:
    tokens = media_cost(PRICER, Endpoint.IMAGES, _t("gpt-4o-mini"), {},
                        {"data": [{}], "usage": {"input_tokens": 1_000_000, "output_tokens": 0}})
    assert tokens.known and tokens.usd > 0 and tokens.usage is not None and tokens.usage.prompt_tokens == 1_000_000
    unknown = media_cost(PRICER, Endpoint.IMAGES, _t("my-image-model"), {}, {"data": [{}]})
    assert (unknown.usd, unknown.known) == (0.0, False)
    # Without a price in the config, the model catalog's per-image price applies (dall-e-3: $0.04).
    catalog = media_cost(PRICER, Endpoint.IMAGES, _t("dall-e-3"), {}, {"data": [{}, {}]})
    assert catalog.known and catalog.usd == pytest.approx(0.08)
    assert answer_usage(Endpoint.RERANK, {"meta": {"billed_units": {"search_units": 2}}}).prompt_tokens == 2  # type: ignore[union-attr]
    assert answer_usage(Endpoint.RERANK, {"usage": {"total_tokens": 7}}).prompt_tokens == 7  # type: ignore[union-attr]
    assert answer_usage(Endpoint.TRANSCRIPTIONS, {"usage": {"type": "duration", "seconds": 3}}) is None
