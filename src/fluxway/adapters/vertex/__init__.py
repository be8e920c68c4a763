"""Google Vertex AI: Gemini and Anthropic models of a Google Cloud project, behind one provider type.

The model name picks the publisher: ``claude-*`` is Anthropic's (``rawPredict`` /
``streamRawPredict`` with a Messages body that names no ``model`` and carries ``anthropic_version:
vertex-2023-10-16``; :mod:`fluxway.adapters.anthropic` translates it), anything else is Google's
(``generateContent`` / ``streamGenerateContent?alt=sse``, translated by
:mod:`fluxway.adapters.gemini`; text-embedding models by ``predict``, :mod:`.embeddings`). Calls
carry ``Authorization: Bearer`` with a token from :mod:`fluxway.credentials.google` or the
configured ``access_token``. The adapter is :mod:`.adapter`. Pure: no I/O.
"""

from fluxway.adapters.vertex.adapter import VertexAdapter

__all__ = ["VertexAdapter"]
