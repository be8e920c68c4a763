"""Bedrock embeddings: InvokeModel with Titan (``{"inputText"}``) or Cohere (``{"texts", ...}``) bodies."""

from __future__ import annotations

from fluxway.adapters.base import Headers
from fluxway.adapters.toolkit import (
    bad_request,
    cohere_embed_fields,
    cohere_embed_vectors,
    embedding_texts,
    openai_embeddings,
)
from fluxway.canonical import JSON, ErrorKind, UpstreamError, Usage


def embed_family(model: str) -> str:
    m = model.lower()
    if "titan-embed" in m:
        return "titan"
    if "cohere.embed" in m:
        return "cohere"
    raise bad_request(f"Bedrock embeddings support Titan and Cohere embed models, not {model!r}")


def embed_body(body: JSON, model: str) -> JSON:
    texts = embedding_texts(body)
    if embed_family(model) == "titan":
        if len(texts) != 1:
            raise bad_request("Titan embedding models take one input per request")
        out: JSON = {"inputText": texts[0]}
        if body.get("dimensions"):
            out["dimensions"] = body["dimensions"]
        return out
    return cohere_embed_fields(texts, body)


def embeddings_from_bedrock(data: JSON, model: str, headers: Headers, body: JSON) -> tuple[JSON, Usage]:
    """An InvokeModel embeddings answer -> (the OpenAI list, usage); ``body`` is the caller's request."""
    if embed_family(model) == "titan":
        vec = data.get("embedding")
        if not isinstance(vec, list):
            raise UpstreamError(ErrorKind.PROTOCOL, "Titan answer has no 'embedding'")
        vectors, tokens = [vec], int(data.get("inputTextTokenCount") or 0)
    else:
        vectors = cohere_embed_vectors(data)
        count = headers.get("x-amzn-bedrock-input-token-count") or headers.get("X-Amzn-Bedrock-Input-Token-Count")
        tokens = int(count) if count and count.isdigit() else 0
    return openai_embeddings(vectors, model, tokens, body), Usage(prompt_tokens=tokens)
