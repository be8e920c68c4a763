"""Amazon Bedrock: the Converse / ConverseStream APIs for chat, InvokeModel for embeddings.

Requests (:mod:`.request`) become Converse bodies; answers (:mod:`.response`) and ConverseStream
events (:mod:`.stream`, framed by :mod:`fluxway.adapters.eventstream`) become OpenAI dicts; errors
(:mod:`.errors`) are classified by AWS error type; embeddings (:mod:`.embeddings`) use Titan or Cohere
bodies. The adapter (:mod:`.adapter`) signs with :mod:`fluxway.adapters.aws_sigv4` unless a Bedrock
API key is configured.
"""

from fluxway.adapters.bedrock.adapter import BedrockAdapter

__all__ = ["BedrockAdapter"]
