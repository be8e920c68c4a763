"""Vertex text embeddings: ``POST .../publishers/google/models/{model}:predict``.

Request ``{"instances": [{"content": text}, ...], "parameters": {"outputDimensionality": n}}``;
answer ``{"predictions": [{"embeddings": {"values": [...], "statistics": {"token_count": n}}}]}``
(Google's "Get text embeddings" reference for ``text-embedding-005`` / ``gemini-embedding-001``).
"""

from __future__ import annotations

from fluxway.adapters.toolkit import embedding_texts, openai_embeddings
from fluxway.canonical import JSON, ErrorKind, UpstreamError, Usage


def predict_body(body: JSON) -> JSON:
    texts = embedding_texts(body, "input: vertex embeds a string or a list of strings (not token arrays)")
    out: JSON = {"instances": [{"content": t} for t in texts]}
    if body.get("dimensions"):
        out["parameters"] = {"outputDimensionality": body["dimensions"]}
    return out


def embeddings_from_predict(data: JSON, model: str, body: JSON) -> tuple[JSON, Usage]:
    predictions = data.get("predictions")
    if not isinstance(predictions, list):
        raise UpstreamError(ErrorKind.PROTOCOL, "vertex predict answer has no 'predictions' list")
    vectors: list[list[float]] = []
    tokens = 0
    for i, p in enumerate(predictions):
        emb = p.get("embeddings") if isinstance(p, dict) else None
        values = emb.get("values") if isinstance(emb, dict) else None
        if not isinstance(values, list):
            raise UpstreamError(ErrorKind.PROTOCOL, f"vertex embedding {i} has no 'values'")
        vectors.append(values)
        stats = emb.get("statistics") if isinstance(emb, dict) else None
        if isinstance(stats, dict) and isinstance(stats.get("token_count"), int | float):
            tokens += int(stats["token_count"])
    return openai_embeddings(vectors, model, tokens, body), Usage(tokens, 0)
