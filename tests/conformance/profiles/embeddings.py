"""Embeddings-only APIs with OpenAI's shapes (Voyage, Jina): the embeddings scenario only.

Their chat scenarios do not apply (the presets serve no chat); the dialect below is written out by
hand from each vendor's API reference (fixtures/embeddings/SOURCES.md).
"""

from __future__ import annotations

from pathlib import Path

from tests.conformance.profile import API_KEY, CHECKS, REPLIES, Ctx, Profile, Reply

FIXTURES = Path(__file__).parent.parent / "fixtures" / "embeddings"
INPUT = ["The quick brown fox"]
DIMENSIONS = 256
# The OpenAI field each vendor takes the output size under.
DIMENSIONS_FIELD = {"voyage": "output_dimension", "jina": "dimensions"}


def embeddings(ctx: Ctx) -> None:
    b = ctx.body
    assert b["model"] == ctx.model
    assert b["input"] == INPUT
    field = DIMENSIONS_FIELD[ctx.variant]
    assert b[field] == DIMENSIONS
    assert set(DIMENSIONS_FIELD.values()) - {field} & set(b) == set()
    assert "user" not in b  # neither API takes it
    assert "stream_options" not in b


PROFILE = Profile(
    name="embeddings",
    fixtures=FIXTURES,
    model="voyage-3.5",
    provider=lambda url, variant: {"type": variant, "base_url": url + "/v1", "api_keys": [API_KEY]},
    path=lambda model, stream: "/v1/embeddings",
    auth=lambda variant: ("authorization", "Bearer " + API_KEY),
    replies={"embeddings": Reply("embeddings.json")},
    checks={"embeddings": embeddings},
    retry_after=0,
    variants=("voyage", "jina"),
    skip={name: "an embeddings-only API: no chat" for name in (*REPLIES, *CHECKS, "timeout")},
)
