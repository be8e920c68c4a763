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

import contextlib
import json
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

    def credential_flow(self) -> str | None:
        """``module:factory`` of the :mod:`fluxway.credentials` flow that gets this provider's
        credentials at run time (tokens, temporary keys); None when its keys are static."""
        return None


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


class EntraIdConfig(Strict):
    """Microsoft Entra ID tokens for Azure OpenAI instead of an `api-key`: a service principal's client
    credentials (tenant_id, client_id, client_secret) or the host's managed identity
    (`managed_identity: true`; client_id then picks a user-assigned identity). Sent as `Authorization: Bearer`."""

    # The directory (tenant) of the service principal.
    tenant_id: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+$")
    # The application (client) id; with managed_identity, a user-assigned identity's client id.
    client_id: str | None = None
    # The service principal's client secret.
    client_secret: str | None = None
    # Use the managed identity of the VM, container or App Service the gateway runs on.
    managed_identity: bool = False
    # The Entra ID authority (another cloud's, or a test server).
    authority_host: str = "https://login.microsoftonline.com"
    # The managed-identity token endpoint on Azure IMDS (default: IDENTITY_ENDPOINT on App Service).
    identity_endpoint: str = "http://169.254.169.254/metadata/identity/oauth2/token"
    # What the token is for (`scope` for client credentials; without `/.default` it is the managed
    # identity's `resource`).
    scope: str = "https://cognitiveservices.azure.com/.default"


class AzureSettings(ProviderSettings):
    """Azure OpenAI (`type: azure`): deployments of a resource, by api-version or the v1 API; an
    `api-key` or Entra ID tokens (`entra_id`)."""

    # The native azure adapter.
    type: Literal["azure"]
    # The resource's endpoint (`https://<resource>.openai.azure.com`): required.
    base_url: str | None = None
    # The `api-version` query parameter, or `v1` for the v1 API (default: the adapter's).
    api_version: str | None = None
    # Entra ID authentication instead of api_keys.
    entra_id: EntraIdConfig | None = None
    # Set by the config loader from App Service's IDENTITY_ENDPOINT / IDENTITY_HEADER.
    _app_service: tuple[str, str] | None = PrivateAttr(default=None)

    def needs_key(self) -> bool:
        return self.entra_id is None

    @property
    def app_service_identity(self) -> tuple[str, str] | None:
        """(IDENTITY_ENDPOINT, IDENTITY_HEADER) when running on App Service / Functions."""
        return self._app_service

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.base_url:
            out.append("base_url: azure needs the resource's base_url")
        e = self.entra_id
        if e is not None:
            if self.api_keys:
                out.append("entra_id: azure takes api_keys or entra_id, not both")
            if e.managed_identity and (e.tenant_id or e.client_secret):
                out.append("entra_id.managed_identity: a managed identity takes no tenant_id or client_secret")
            if not e.managed_identity:
                missing = [k for k in ("tenant_id", "client_id", "client_secret") if not getattr(e, k)]
                if missing:
                    out.append(f"entra_id.{missing[0]}: client credentials need tenant_id, client_id and"
                               " client_secret (or managed_identity: true)")
        return out

    def with_env(self, env: Mapping[str, str]) -> AzureSettings:
        if self.entra_id is None or not self.entra_id.managed_identity:
            return self
        endpoint, header = env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER")
        if not (endpoint and header):
            return self
        out = self.model_copy()
        out._app_service = (endpoint, header)
        return out

    def secrets(self) -> tuple[str, ...]:
        extra = (self.entra_id.client_secret,) if self.entra_id and self.entra_id.client_secret else ()
        return (*self.api_keys, *extra)

    def credential_flow(self) -> str | None:
        if self.entra_id is None:
            return None
        if self.entra_id.managed_identity:
            return "fluxway.credentials.azure_managed_identity:source_for"
        return "fluxway.credentials.azure_client_secret:source_for"


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
# The variables the AWS credential chain reads when a Bedrock provider has no static keys (as
# botocore's providers do), captured by the config loader.
AWS_CHAIN_ENV = (
    "HOME",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
)


class BedrockSettings(ProviderSettings):
    """AWS Bedrock's Converse API (`type: bedrock`): a Bedrock API key, SigV4 credentials, the AWS_*
    variables or, with none of them, the standard AWS credential chain (web identity, shared profile,
    container credentials, EC2 instance metadata)."""

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
    # The shared-config profile the credential chain reads (default AWS_PROFILE, else `default`).
    aws_profile: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@+=,-]+$")
    # Set by the config loader: the AWS_* variables the credential chain reads (AWS_CHAIN_ENV), and
    # the one of a half-set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY pair.
    _chain_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _half_env_pair: str | None = PrivateAttr(default=None)

    key_required: ClassVar[bool] = False

    @property
    def chain_env(self) -> Mapping[str, str]:
        """The AWS_* variables (and HOME) the credential chain reads."""
        return self._chain_env

    def uses_chain(self) -> bool:
        """No Bedrock API key and no static keys: the credential chain finds them."""
        return not self.api_keys and not (self.aws_access_key_id or self.aws_secret_access_key)

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.region and not self.base_url:
            out.append("region: bedrock needs a region (or AWS_REGION)")
        if not self.api_keys and bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            out.append("aws_access_key_id: bedrock needs both aws_access_key_id and aws_secret_access_key")
        elif self.uses_chain() and self._half_env_pair:
            out.append(
                f"aws_access_key_id: {self._half_env_pair} is set without its pair"
                " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together)"
            )
        return out

    def credential_flow(self) -> str | None:
        return "fluxway.credentials.aws_chain:source_for" if self.uses_chain() else None

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
        half: str | None = None
        if "aws_access_key_id" not in update or "aws_secret_access_key" not in update:
            half = next((var for f, var in _AWS_ENV[2:4] if f in update), None)
            for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
                update.pop(field, None)
        bearer = env.get("AWS_BEARER_TOKEN_BEDROCK")
        if bearer and not has_own:
            update = {k: v for k, v in update.items() if k == "region"}
            update["api_keys"] = (bearer,)
            half = None
        out = self.model_copy(update=update) if update else self
        if out.uses_chain():
            out = out.model_copy() if out is self else out
            out._chain_env = {k: env[k] for k in AWS_CHAIN_ENV if env.get(k)}
            out._half_env_pair = half
        return out

    def secrets(self) -> tuple[str, ...]:
        extra = (self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token)
        return (*self.api_keys, *(v for v in extra if v))

    def continuation_for(self, model: str) -> Continuation:
        if self.continuation is not None:
            return self.continuation
        lowered = model.lower()
        return "prefill" if "anthropic" in lowered or "claude" in lowered else "none"  # Claude only


class VertexSettings(ProviderSettings):
    """Google Vertex AI (`type: vertex`): Gemini (`gemini-*`, generateContent) and Anthropic
    (`claude-*`, rawPredict) models of a Google Cloud project, with a service-account key or an
    access token."""

    # The native vertex adapter.
    type: Literal["vertex"]
    # The Google Cloud project id (default GOOGLE_CLOUD_PROJECT, else the service account's project_id).
    project: str | None = Field(None, pattern=r"^[a-z0-9.:-]+$")
    # The region (`us-central1`, `europe-west4`, ...) or `global` (default GOOGLE_CLOUD_LOCATION).
    location: str | None = Field(None, pattern=r"^[a-z0-9-]+$")
    # A service-account key: the path of its JSON file or the JSON itself (e.g. `${GOOGLE_SA_JSON}`);
    # default GOOGLE_APPLICATION_CREDENTIALS when access_token is not set either.
    credentials: str | None = None
    # A static OAuth2 access token instead (it is not refreshed: it works until it expires).
    access_token: str | None = None
    # Where service-account JWTs are exchanged for tokens (default: the key's token_uri).
    token_uri: str | None = None

    key_required: ClassVar[bool] = False

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.api_keys:
            out.append("api_keys: vertex authenticates with credentials (a service-account key) or access_token")
        if not self.credentials and not self.access_token:
            out.append(
                "credentials: vertex needs a service-account key in credentials (a file path or the JSON;"
                " or GOOGLE_APPLICATION_CREDENTIALS) or an access_token"
            )
        elif self.credentials and self.access_token:
            out.append("credentials: vertex takes credentials or access_token, not both")
        elif self.credentials:
            from fluxway.credentials.google import ServiceAccount

            try:
                ServiceAccount.parse(self.credentials)
            except ValueError as exc:
                out.append(f"credentials: {exc}")
        if not self.project:
            out.append("project: vertex needs the Google Cloud project (or GOOGLE_CLOUD_PROJECT)")
        if not self.location:
            out.append("location: vertex needs a location, a region or `global` (or GOOGLE_CLOUD_LOCATION)")
        return out

    def with_env(self, env: Mapping[str, str]) -> VertexSettings:
        update: dict[str, Any] = {}
        if not self.location and env.get("GOOGLE_CLOUD_LOCATION"):
            update["location"] = env["GOOGLE_CLOUD_LOCATION"]
        if not self.credentials and not self.access_token and env.get("GOOGLE_APPLICATION_CREDENTIALS"):
            update["credentials"] = env["GOOGLE_APPLICATION_CREDENTIALS"]
        if not self.project:
            if env.get("GOOGLE_CLOUD_PROJECT"):
                update["project"] = env["GOOGLE_CLOUD_PROJECT"]
            elif creds := update.get("credentials", self.credentials):
                from fluxway.credentials.google import ServiceAccount

                with contextlib.suppress(ValueError):  # problems() says why
                    update["project"] = ServiceAccount.parse(creds).project_id
        return self.model_copy(update=update) if update else self

    def secrets(self) -> tuple[str, ...]:
        out = [v for v in (self.access_token,) if v]
        if self.credentials and self.credentials.lstrip().startswith("{"):
            out.append(self.credentials)
            try:
                key = json.loads(self.credentials).get("private_key")
            except (ValueError, AttributeError):
                key = None
            if isinstance(key, str) and key:
                out.append(key)
        return tuple(out)

    def continuation_for(self, model: str) -> Continuation:
        if self.continuation is not None:
            return self.continuation
        return "prefill" if is_claude(model) else "none"

    def credential_flow(self) -> str | None:
        return "fluxway.credentials.google:source_for" if self.credentials else None


def is_claude(model: str) -> bool:
    """Is a Vertex model name one of Anthropic's (served by rawPredict)?"""
    return model.lower().rsplit("/", 1)[-1].startswith("claude")


# type -> its settings class (the OpenAI-compatible presets share one).
NATIVE: dict[str, type[ProviderSettings]] = {
    "anthropic": AnthropicSettings,
    "gemini": GeminiSettings,
    "azure": AzureSettings,
    "bedrock": BedrockSettings,
    "cohere": CohereSettings,
    "vertex": VertexSettings,
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
    | Annotated[CohereSettings, Tag("cohere")]
    | Annotated[VertexSettings, Tag("vertex")],
    Discriminator(_tag),
]
# The tags that appear in a validation error's location (the loader drops them from paths).
TAGS = frozenset({_COMPAT_TAG, *NATIVE})
