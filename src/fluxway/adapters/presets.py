"""OpenAI-compatible vendors as data: one row each, no classes.

``drop`` lists request fields the vendor rejects (removed before sending), ``rename`` maps OpenAI
field names to the vendor's, ``auth`` is how the key is sent (``bearer``, or ``None`` for local
servers that take no key), ``stream_usage`` whether the vendor honours
``stream_options.include_usage`` (Fluxway asks for it so every stream has usage to record).

``continuation`` is how the vendor continues a partial assistant answer (for a mid-stream failover,
see ``routing/continuation.py`` and docs/providers.md): ``prefix`` (a trailing assistant message
with ``"prefix": true``: Mistral, DeepSeek's beta API at ``continuation_base_url``),
``continue_final_message`` (vLLM), ``completion`` (the server's chat template applied with
``POST /apply-template``, the prompt continued on ``/completions``: llama.cpp), ``prefill`` (a
trailing assistant message the server continues as is), or ``none``.

``surface`` lists the pass-through endpoints the vendor serves under its base URL with OpenAI's
paths (``/images/generations``, ``/audio/speech``, ``/audio/transcriptions``, ``/rerank``,
``/files``, ``/batches``: see ``api/surface.py`` and docs/surface.md); a call to one it lacks is
answered 400 naming the provider.

Every row below the local servers was checked against the vendor's published API reference; the
source of each is in docs/providers.md ("More hosted presets (issue 12)"). A preset whose base URL
holds an account or workspace (Cloudflare, Databricks) or that is your own server (LiteLLM) has
``base_url=None``: the provider entry must set it. The default models of each preset, all priced,
are in the model catalog (``fluxway/data/models.json``, each provider block's ``defaults``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fluxway.canonical import Endpoint

Continuation = Literal["prefill", "prefix", "continue_final_message", "completion", "none"]


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str | None
    auth: Literal["bearer"] | None = "bearer"
    key_required: bool = True
    drop: frozenset[str] = field(default_factory=frozenset)
    rename: tuple[tuple[str, str], ...] = ()
    stream_usage: bool = True
    embeddings: bool = True
    completions: bool = True
    continuation: Continuation = "none"
    # Where continuation calls go when the provider's base_url is the preset's (DeepSeek's beta API).
    continuation_base_url: str | None = None
    surface: frozenset[Endpoint] = frozenset()
    # Chat completions served (False for embeddings-only APIs: Voyage, Jina).
    chat: bool = True


def _f(*names: str) -> frozenset[str]:
    return _ANTHROPIC_ONLY | frozenset(names)


# Fields an Anthropic-shaped request carries that OpenAI's API rejects (vLLM and llama.cpp take top_k).
_ANTHROPIC_ONLY = frozenset({"thinking"})
_OPENAI_STRICT = frozenset({"thinking", "top_k"})
# OpenAI-only fields most hosted open-model vendors (vLLM/SGLang behind a router) do not take.
_OPENAI_ONLY = ("store", "metadata", "service_tier", "modalities", "audio", "prediction", "web_search_options",
                "verbosity")
# What the OpenAI embeddings body carries that an embeddings-only vendor rejects.
_EMBED_ONLY = frozenset({"thinking", "user"})

_E = Endpoint
# OpenAI's own pass-through endpoints (it has no rerank); an unknown compatible server may have any.
OPENAI_SURFACE = frozenset({_E.IMAGES, _E.SPEECH, _E.TRANSCRIPTIONS, _E.FILES, _E.BATCHES})
ALL_SURFACE = OPENAI_SURFACE | {_E.RERANK}


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", drop=_OPENAI_STRICT, surface=OPENAI_SURFACE),
    # Any other OpenAI-compatible server: base_url is required, a key optional.
    "openai-compatible": Preset(None, key_required=False, drop=_f(), surface=ALL_SURFACE),
    "mistral": Preset(
        "https://api.mistral.ai/v1",
        drop=_f("top_k", "logit_bias", "logprobs", "top_logprobs", "user", "store", "metadata", "service_tier",
                "modalities", "audio", "prediction", "reasoning_effort", "verbosity", "web_search_options"),
        rename=(("max_completion_tokens", "max_tokens"), ("seed", "random_seed")),
        completions=False,
        continuation="prefix",
    ),
    "groq": Preset(
        "https://api.groq.com/openai/v1",
        drop=_f("top_k", "logit_bias", "logprobs", "top_logprobs", "store", "metadata", "modalities", "audio",
                "prediction", "web_search_options", "verbosity"),
        completions=False,
        surface=frozenset({_E.SPEECH, _E.TRANSCRIPTIONS, _E.FILES, _E.BATCHES}),
    ),
    "together": Preset("https://api.together.xyz/v1", drop=_f("store", "metadata", "web_search_options"),
                       surface=ALL_SURFACE),
    "deepseek": Preset(
        "https://api.deepseek.com/v1",
        drop=_f("top_k", "n", "logit_bias", "seed", "store", "metadata", "service_tier", "modalities", "audio",
                "prediction", "web_search_options", "verbosity", "reasoning_effort", "user"),
        rename=(("max_completion_tokens", "max_tokens"),),
        embeddings=False,
        # Chat Prefix Completion is a beta feature: only https://api.deepseek.com/beta serves it.
        continuation="prefix",
        continuation_base_url="https://api.deepseek.com/beta",
    ),
    "xai": Preset("https://api.x.ai/v1", drop=_f("store", "metadata", "web_search_options", "verbosity", "top_k"),
                  surface=frozenset({_E.IMAGES})),
    "fireworks": Preset(
        "https://api.fireworks.ai/inference/v1",
        drop=_f("store", "metadata", "service_tier", "web_search_options", "verbosity"),
        rename=(("max_completion_tokens", "max_tokens"),),
    ),
    "openrouter": Preset("https://openrouter.ai/api/v1", drop=_f(), embeddings=False),
    "perplexity": Preset(
        "https://api.perplexity.ai",
        drop=_f("n", "logit_bias", "logprobs", "top_logprobs", "seed", "tools", "tool_choice",
                "parallel_tool_calls", "store", "metadata", "user", "service_tier", "modalities", "audio",
                "prediction", "verbosity", "reasoning_effort"),
        rename=(("max_completion_tokens", "max_tokens"),),
        embeddings=False,
        completions=False,
    ),
    "cerebras": Preset(
        "https://api.cerebras.ai/v1",
        drop=_f("top_k", "frequency_penalty", "presence_penalty", "logit_bias", "n", "store", "metadata",
                "service_tier", "modalities", "audio", "prediction", "web_search_options", "verbosity"),
        embeddings=False,
    ),
    "ollama": Preset("http://localhost:11434/v1", auth=None, key_required=False,
                     drop=_f("logit_bias", "n", "store", "metadata", "service_tier")),
    "vllm": Preset("http://localhost:8000/v1", key_required=False, drop=_f("store", "metadata"),
                   continuation="continue_final_message", surface=frozenset({_E.TRANSCRIPTIONS, _E.RERANK})),
    "lmstudio": Preset("http://localhost:1234/v1", auth=None, key_required=False,
                       drop=_f("store", "metadata", "service_tier")),
    "llamacpp": Preset("http://localhost:8080/v1", key_required=False, drop=_f("store", "metadata"),
                       continuation="completion", surface=frozenset({_E.RERANK})),
    # -- hosted OpenAI-compatible vendors (issue 12); sources: docs/providers.md ---------------------
    "nvidia": Preset("https://integrate.api.nvidia.com/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort")),
    "huggingface": Preset("https://router.huggingface.co/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort"),
                          embeddings=False, completions=False),
    # base_url required: https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1
    "cloudflare": Preset(None, drop=_f(*_OPENAI_ONLY, "logit_bias", "logprobs", "top_logprobs", "n", "user",
                                       "reasoning_effort"), completions=False),
    # base_url required: https://{workspace}.cloud.databricks.com/serving-endpoints
    "databricks": Preset(None, drop=_f(*_OPENAI_ONLY, "logit_bias", "user", "reasoning_effort")),
    "sambanova": Preset("https://api.sambanova.ai/v1",
                        drop=_f(*_OPENAI_ONLY, "logit_bias", "logprobs", "top_logprobs", "n", "presence_penalty",
                                "frequency_penalty", "seed", "user", "reasoning_effort"),
                        rename=(("max_completion_tokens", "max_tokens"),), completions=False),
    "nebius": Preset("https://api.tokenfactory.nebius.com/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort")),
    "novita": Preset("https://api.novita.ai/openai/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort"),
                     rename=(("max_completion_tokens", "max_tokens"),)),
    "hyperbolic": Preset("https://api.hyperbolic.xyz/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort", "user"),
                         rename=(("max_completion_tokens", "max_tokens"),), embeddings=False),
    "baseten": Preset("https://inference.baseten.co/v1", drop=_f(*_OPENAI_ONLY), embeddings=False,
                      completions=False),
    "deepinfra": Preset("https://api.deepinfra.com/v1/openai", drop=_f(*_OPENAI_ONLY)),
    "moonshot": Preset("https://api.moonshot.ai/v1",
                       drop=_f(*_OPENAI_ONLY, "top_k", "logit_bias", "logprobs", "top_logprobs", "user",
                               "reasoning_effort", "parallel_tool_calls"),
                       rename=(("max_completion_tokens", "max_tokens"),), embeddings=False, completions=False),
    "qwen": Preset("https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                   drop=_f(*_OPENAI_ONLY, "logit_bias", "user", "reasoning_effort"),
                   rename=(("max_completion_tokens", "max_tokens"),), completions=False),
    # Zhipu BigModel (mainland China) and Z.ai (international) share one API: no penalties, no
    # stream_options (the last chunk carries usage unasked), max_tokens only.
    "zhipu": Preset("https://open.bigmodel.cn/api/paas/v4",
                    drop=_f(*_OPENAI_ONLY, "top_k", "frequency_penalty", "presence_penalty", "logit_bias",
                            "logprobs", "top_logprobs", "n", "seed", "stream_options", "parallel_tool_calls",
                            "reasoning_effort"),
                    rename=(("max_completion_tokens", "max_tokens"),), stream_usage=False, completions=False),
    "zai": Preset("https://api.z.ai/api/paas/v4",
                  drop=_f(*_OPENAI_ONLY, "top_k", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs",
                          "top_logprobs", "n", "seed", "stream_options", "parallel_tool_calls", "reasoning_effort"),
                  rename=(("max_completion_tokens", "max_tokens"),), stream_usage=False, completions=False),
    # MiniMax: max_completion_tokens (max_tokens is deprecated there); no penalties, seed,
    # tool_choice, parallel_tool_calls or response_format.
    "minimax": Preset("https://api.minimax.io/v1",
                      drop=_f(*_OPENAI_ONLY, "top_k", "frequency_penalty", "presence_penalty", "logit_bias",
                              "logprobs", "top_logprobs", "seed", "tool_choice", "parallel_tool_calls",
                              "response_format", "reasoning_effort", "user"),
                      embeddings=False, completions=False),
    "upstage": Preset("https://api.upstage.ai/v1",
                      drop=_f(*_OPENAI_ONLY, "top_k", "logit_bias", "logprobs", "top_logprobs", "user"),
                      rename=(("max_completion_tokens", "max_tokens"),), completions=False),
    "ai21": Preset("https://api.ai21.com/studio/v1",
                   drop=_f(*_OPENAI_ONLY, "top_k", "logit_bias", "logprobs", "top_logprobs", "frequency_penalty",
                           "presence_penalty", "seed", "user", "parallel_tool_calls", "reasoning_effort"),
                   rename=(("max_completion_tokens", "max_tokens"),), embeddings=False, completions=False),
    "nscale": Preset("https://inference.api.nscale.com/v1", drop=_f(*_OPENAI_ONLY, "reasoning_effort"),
                     embeddings=False, completions=False),
    # Scaleway's embeddings take neither dimensions nor encoding_format (floats only).
    "scaleway": Preset("https://api.scaleway.ai/v1",
                       drop=_f(*_OPENAI_ONLY, "logit_bias", "reasoning_effort", "dimensions", "encoding_format"),
                       completions=False),
    "ovhcloud": Preset("https://oai.endpoints.kepler.ai.cloud.ovh.net/v1",
                       drop=_f(*_OPENAI_ONLY, "reasoning_effort"), completions=False),
    "github": Preset("https://models.github.ai/inference", drop=_f(*_OPENAI_ONLY, "top_k"), embeddings=False,
                     completions=False),
    # A LiteLLM proxy as an upstream: base_url required, a key optional (its virtual keys).
    "litellm": Preset(None, key_required=False, drop=_f()),
    # Embeddings-only APIs with OpenAI's request and response shapes.
    "voyage": Preset("https://api.voyageai.com/v1", drop=_EMBED_ONLY, rename=(("dimensions", "output_dimension"),),
                     stream_usage=False, completions=False, chat=False, surface=frozenset({_E.RERANK})),
    "jina": Preset("https://api.jina.ai/v1", drop=_EMBED_ONLY, stream_usage=False, completions=False, chat=False,
                   surface=frozenset({_E.RERANK})),
}
