"""Each adapter's provider settings: one pydantic model per adapter, discriminated by ``type``.

:class:`ProviderSettings` holds what every provider has (name, keys, base URL, headers, timeouts,
bounds, continuation); each adapter's class adds its own fields and knows its own rules: whether
it needs a key (:meth:`~ProviderSettings.problems`), what it takes from the environment
(:meth:`~ProviderSettings.with_env`), which values are secrets (:meth:`~ProviderSettings.secrets`)
and how it continues a partial answer (:meth:`~ProviderSettings.continuation_for`). ``fluxway.config``
joins them in :data:`ProviderConfig` and never branches on a provider's type.

Imports only pydantic, the config building blocks and the preset table: adapters import their
settings from here, and the config imports no adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, PrivateAttr, Tag, field_validator

from fluxway.adapters.presets import PRESETS, Continuation
from fluxway.config_base import HealthCheckConfig, Strict, TimeoutConfig


class ProviderSettings(Strict):
    """What every provider has; each type's class below adds its own settings."""

    # What targets and `<provider>/<model>` call it by.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # The adapter: a preset or native type (docs/providers.md lists them).
    type: str
    # Where its API lives (default: the type's).
    base_url: str | None = None
    # Keys used round-robin, each with its own breaker and rate-limit cool-down; a string is one key.
    api_keys: tuple[str, ...] = ()
    # Extra HTTP headers sent with every call.
    headers: dict[str, str] = Field(default_factory=dict)
    # Timeouts of its calls (a model's own `timeout` wins).
    timeout: TimeoutConfig = TimeoutConfig()
    # Parameters this provider rejects; dropped from requests before sending (added to the preset's).
    drop_params: tuple[str, ...] = ()
    # Optional active health checks: a one-token chat request to each of this provider's targets.
    health_check: HealthCheckConfig | None = None
    # Bounds on what one upstream answer may make the gateway hold: one SSE event / event-stream
    # frame, and a whole buffered (non-streamed or error) body. Over them the call fails with a 502.
    max_event_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # See max_event_bytes.
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # How this provider continues a partial assistant answer after a mid-stream failover (default:
    # its type's; see docs/providers.md "Continuation").
    continuation: Continuation | None = None
    # Set by the config loader: the environment variables that api_keys named and that were unset
    # or empty (`${OPENAI_API_KEY:-}`): the provider loads, but its calls fail saying which to set.
    _unset_key_vars: tuple[str, ...] = PrivateAttr(default=())

    # Does this type need an entry in api_keys?
    key_required: ClassVar[bool] = True
    # How this type continues a partial answer when `continuation` is not set.
    default_continuation: ClassVar[Continuation] = "none"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            return tuple(k for k in v if k != "")
        return v

    @property
    def unset_key_vars(self) -> tuple[str, ...]:
        """The unset environment variables this provider's (now empty) ``api_keys`` came from."""
        return self._unset_key_vars

    def mark_unset_key_vars(self, names: tuple[str, ...]) -> None:
        self._unset_key_vars = names

    def needs_key(self) -> bool:
        return self.key_required

    def problems(self) -> list[str]:
        """What is wrong with these settings, each as ``field: message`` (the loader adds the path)."""
        if self.needs_key() and not self.api_keys and not self.unset_key_vars:
            return [f"api_keys: provider type '{self.type}' needs at least one API key"]
        return []

    def with_env(self, env: Mapping[str, str]) -> ProviderSettings:
        """These settings with what this type takes from the environment filled in (default: none)."""
        return self

    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from anything logged or returned (headers are scrubbed by name elsewhere)."""
        return self.api_keys

    def continuation_for(self, model: str) -> Continuation:
        """How a target of this provider continues a partial assistant answer."""
        return self.continuation if self.continuation is not None else self.default_continuation


class OpenAICompatSettings(ProviderSettings):
    """`type:` one of the OpenAI-compatible presets (openai, mistral, groq, ollama, vllm, ...; the
    provider table in docs/providers.md lists them)."""

    # The preset: its base URL, dialect and continuation (docs/providers.md).
    type: str

    # The heading of its section in docs/configuration.md.
    doc_label: ClassVar[str] = "type: an OpenAI-compatible preset"

    @field_validator("type")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown provider type '{v}'")
        return v

    def needs_key(self) -> bool:
        return PRESETS[self.type].key_required

    def problems(self) -> list[str]:
        out = super().problems()
        if PRESETS[self.type].base_url is None and not self.base_url:
            out.append(f"base_url: provider type '{self.type}' needs the server's base_url")
        return out

    def continuation_for(self, model: str) -> Continuation:
        return self.continuation if self.continuation is not None else PRESETS[self.type].continuation


class AnthropicSettings(ProviderSettings):
    """Anthropic's Messages API (`type: anthropic`)."""

    # The native anthropic adapter.
    type: Literal["anthropic"]
    # The `anthropic-version` header (default: the adapter's).
    api_version: str | None = None

    default_continuation: ClassVar[Continuation] = "prefill"


class GeminiSettings(ProviderSettings):
    """Google's Gemini API (`type: gemini`, generateContent on generativelanguage.googleapis.com)."""

    # The native gemini adapter.
    type: Literal["gemini"]
    # The API version in the URL (`v1beta` by default) when base_url does not name one.
    api_version: str | None = None


class AzureSettings(ProviderSettings):
    """Azure OpenAI (`type: azure`): deployments of a resource, by api-version or the v1 API."""

    # The native azure adapter.
    type: Literal["azure"]
    # The resource's endpoint (`https://<resource>.openai.azure.com`): required.
    base_url: str | None = None
    # The `api-version` query parameter, or `v1` for the v1 API (default: the adapter's).
    api_version: str | None = None

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.base_url:
            out.append("base_url: azure needs the resource's base_url")
        return out


class CohereSettings(ProviderSettings):
    """Cohere's v2 Chat and Embed APIs (`type: cohere`)."""

    # The native cohere adapter.
    type: Literal["cohere"]


# (field, environment variable) a Bedrock provider takes when unset.
_AWS_ENV = (
    ("region", "AWS_REGION"),
    ("region", "AWS_DEFAULT_REGION"),
    ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("aws_session_token", "AWS_SESSION_TOKEN"),
)


class BedrockSettings(ProviderSettings):
    """AWS Bedrock's Converse API (`type: bedrock`): a Bedrock API key, SigV4 credentials or the AWS_* variables."""

    # The native bedrock adapter.
    type: Literal["bedrock"]
    # The AWS region (default AWS_REGION / AWS_DEFAULT_REGION).
    region: str | None = None
    # SigV4 credentials, used when api_keys is empty (default: AWS_ACCESS_KEY_ID, ...).
    aws_access_key_id: str | None = None
    # The secret of aws_access_key_id (default AWS_SECRET_ACCESS_KEY).
    aws_secret_access_key: str | None = None
    # A temporary credential's session token (default AWS_SESSION_TOKEN).
    aws_session_token: str | None = None

    key_required: ClassVar[bool] = False

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.region and not self.base_url:
            out.append("region: bedrock needs a region (or AWS_REGION)")
        if not self.api_keys and not (self.aws_access_key_id and self.aws_secret_access_key):
            out.append(
                "aws_access_key_id: bedrock needs aws_access_key_id and aws_secret_access_key"
                " (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or a Bedrock API key in api_keys"
            )
        return out

    def with_env(self, env: Mapping[str, str]) -> BedrockSettings:
        """Unset region and credentials from the standard AWS_* variables: static keys only as a
        pair, a session token only with them; ``AWS_BEARER_TOKEN_BEDROCK`` (a Bedrock API key) is
        preferred over environment keys, as boto3 does."""
        update: dict[str, Any] = {}
        has_own = bool(self.aws_access_key_id or self.aws_secret_access_key or self.api_keys)
        for field, var in _AWS_ENV:
            if field == "region" and (self.region or "region" in update):
                continue
            if field != "region" and has_own:
                continue
            if env.get(var):
                update[field] = env[var]
        if "aws_access_key_id" not in update or "aws_secret_access_key" not in update:
            for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
                update.pop(field, None)
        bearer = env.get("AWS_BEARER_TOKEN_BEDROCK")
        if bearer and not has_own:
            update = {k: v for k, v in update.items() if k == "region"}
            update["api_keys"] = (bearer,)
        return self.model_copy(update=update) if update else self

    def secrets(self) -> tuple[str, ...]:
        extra = (self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token)
        return (*self.api_keys, *(v for v in extra if v))

    def continuation_for(self, model: str) -> Continuation:
        if self.continuation is not None:
            return self.continuation
        lowered = model.lower()
        return "prefill" if "anthropic" in lowered or "claude" in lowered else "none"  # Claude only


# type -> its settings class (the OpenAI-compatible presets share one).
NATIVE: dict[str, type[ProviderSettings]] = {
    "anthropic": AnthropicSettings,
    "gemini": GeminiSettings,
    "azure": AzureSettings,
    "bedrock": BedrockSettings,
    "cohere": CohereSettings,
}
_COMPAT_TAG = "openai-compatible preset"


def _tag(value: Any) -> str:
    type_ = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return type_ if isinstance(type_, str) and type_ in NATIVE else _COMPAT_TAG


# What `providers[]` holds: the settings of the provider's type.
ProviderConfig = Annotated[
    Annotated[OpenAICompatSettings, Tag(_COMPAT_TAG)]
    | Annotated[AnthropicSettings, Tag("anthropic")]
    | Annotated[GeminiSettings, Tag("gemini")]
    | Annotated[AzureSettings, Tag("azure")]
    | Annotated[BedrockSettings, Tag("bedrock")]
    | Annotated[CohereSettings, Tag("cohere")],
    Discriminator(_tag),
]
# The tags that appear in a validation error's location (the loader drops them from paths).
TAGS = frozenset({_COMPAT_TAG, *NATIVE})
