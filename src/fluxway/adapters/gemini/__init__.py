"""Google Gemini (Generative Language API): generateContent, streamGenerateContent, batchEmbedContents.

Requests (:mod:`.request`): an OpenAI chat body becomes ``contents``/``parts`` with a
``systemInstruction``, ``functionDeclarations`` and a ``generationConfig``. Gemini function calls carry
no ids, so the adapter synthesises ``call_...`` ids (:mod:`.wire`, with the call's thought signature
folded in, so that a Gemini 3 model gets it back with the tool result) and maps tool results back by
function name. Answers (:mod:`.response`), streams (:mod:`.stream`), embeddings (:mod:`.embeddings`)
and errors (:mod:`.errors`) may use camelCase or snake_case keys; both are read. The adapter is
:mod:`.adapter`. Pure: no I/O.
"""

from fluxway.adapters.gemini.adapter import GeminiAdapter

__all__ = ["GeminiAdapter"]
