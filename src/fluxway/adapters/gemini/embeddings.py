"""Gemini embeddings: ``batchEmbedContents`` requests and answers."""

from __future__ import annotations

from typing import Any

from fluxway.adapters.gemini.models import model_resource
from fluxway.adapters.gemini.wire import pick
from fluxway.adapters.toolkit import embedding_texts, embeddings_list, float32_base64
from fluxway.canonical import JSON, CanonicalRequest, ErrorKind, UpstreamError, Usage
from fluxway.tokens import count_text


def build_embeddings(body: JSON, model: str) -> JSON:
    texts = embedding_texts(body, "input: gemini embeds a string or a list of strings (not token arrays)")
    requests: list[JSON] = []
    for text in texts:
        r: JSON = {"model": model_resource(model), "content": {"parts": [{"text": text}]}}
        if body.get("dimensions"):
            r["outputDimensionality"] = body["dimensions"]
        requests.append(r)
    return {"requests": requests}


def embeddings_from_gemini(data: JSON, req: CanonicalRequest, model: str) -> tuple[JSON, Usage]:
    embeddings = data.get("embeddings")
    if not isinstance(embeddings, list):
        raise UpstreamError(ErrorKind.PROTOCOL, "gemini embeddings response has no 'embeddings' list")
    as_base64 = req.body.get("encoding_format") == "base64"
    items: list[JSON] = []
    for i, e in enumerate(embeddings):
        values = e.get("values") if isinstance(e, dict) else None
        if not isinstance(values, list):
            raise UpstreamError(ErrorKind.PROTOCOL, f"gemini embedding {i} has no 'values'")
        vector: Any = values
        if as_base64:
            vector = float32_base64(values)
        items.append({"object": "embedding", "index": i, "embedding": vector})
    meta = pick(data, "usageMetadata", "usage_metadata")
    prompt = int(pick(meta, "promptTokenCount", "prompt_token_count") or 0)
    estimated = not prompt
    if estimated:
        inp = req.body.get("input")
        texts = [inp] if isinstance(inp, str) else inp if isinstance(inp, list) else []
        prompt = sum(count_text(t) for t in texts if isinstance(t, str))  # o200k_base: Gemini's own ships nowhere
    return embeddings_list(items, model, prompt), Usage(prompt, 0, estimated=estimated)
