"""Anthropic Messages API (``POST /v1/messages``).

Requests (:mod:`.request`): an OpenAI chat body becomes a Messages body (system to the top level,
consecutive roles merged, tool messages to ``tool_result`` blocks, images to ``image`` blocks, ...).
Answers (:mod:`.response`) and SSE streams (:mod:`.stream`) become OpenAI ``chat.completion`` /
``chat.completion.chunk`` dicts. Errors (:mod:`.errors`) are classified from Anthropic's
``{"type": "error", "error": {"type", "message"}}`` bodies. The adapter is :mod:`.adapter`. Pure: no I/O.
"""

from fluxway.adapters.anthropic.adapter import AnthropicAdapter

__all__ = ["AnthropicAdapter"]
