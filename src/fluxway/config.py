"""Configuration: YAML -> ``${VAR}`` expansion -> strict pydantic models -> cross-reference checks.

``load()`` returns a frozen :class:`Config` or raises :class:`ConfigError` listing every problem with
its path (``models[1].targets[0].provider: unknown provider 'opnai'``). This is the only module that
reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from fluxway.adapters.settings import TAGS, ProviderConfig
from fluxway.canonical import Price, Strategy, Target
from fluxway.catalog import CAPABILITIES
from fluxway.config_base import Strict, TimeoutConfig
from fluxway.config_observability import AdminConfig, ObservabilityConfig
from fluxway.events.alerts.settings import AlertRule, alert_problems
from fluxway.events.settings import SinkConfig, sink_problems
from fluxway.mcp.settings import McpConfig, ToolLoopConfig, mcp_problems
from fluxway.policy.pipeline import DEFAULT_PIPELINE, validate_pipeline


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class CorsConfig(Strict):
    # Browser origins allowed to call the gateway ("https://app.example.com"; "*" for any).
    origins: tuple[str, ...] = ()
    # Seconds a browser may cache a preflight answer (Access-Control-Max-Age).
    max_age_s: int = Field(600, ge=0)


class ServerConfig(Strict):
    # Address to listen on (`fluxway serve --host` overrides); off loopback it needs auth.master_key.
    host: str = "127.0.0.1"
    # Port to listen on (`fluxway serve --port` overrides).
    port: int = Field(8400, ge=0, le=65535)
    # Server processes (`fluxway serve --workers` overrides).
    workers: int = Field(1, ge=1, le=256)
    # Largest request body accepted: 413 over it.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Largest multipart upload (`/v1/files`, `/v1/audio/transcriptions`), in bytes; over it 413.
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Requests in flight in one process before new ones are shed with 503 (0: never shed).
    max_in_flight: int = Field(4096, ge=0)
    # --- slow clients, admission and drain (issue 9 #4, #6) ---
    # Seconds a connection may take to send a request's headers (idle ones included): 408 after.
    header_timeout_s: float = Field(10.0, gt=0)
    # Request line + headers larger than this: 431.
    max_header_bytes: int = Field(65536, ge=1024)
    # Seconds to receive a whole request body once the headers are in: 408 after.
    body_timeout_s: float = Field(30.0, gt=0)
    # Open client connections per process; one more is answered 503 and closed (0: no cap).
    max_connections: int = Field(10000, ge=0)
    # Calls in flight per key (0: no limit); a key's metadata.max_concurrency overrides it.
    max_concurrency_per_key: int = Field(0, ge=0)
    # Seconds open calls and streams get to finish at shutdown before they are cut (and recorded partial).
    drain_s: float = Field(30.0, ge=0)
    # Cross-origin browser calls: off unless origins are listed.
    cors: CorsConfig = CorsConfig()


class AuthConfig(Strict):
    # The admin credential (`Authorization: Bearer`); unset or empty: the admin API is closed.
    master_key: str | None = None

    @field_validator("master_key")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


class StoreConfig(Strict):
    # Keys, teams and usage records: `sqlite:///path` (relative to the config file) or `postgresql://...`.
    url: str = "sqlite:///./fluxway.db"


class RedisConfig(Strict):
    # `redis://...` to share rate limits and budgets between processes and instances; empty = per process.
    url: str | None = None
    # While Redis is down: open = budgets and rate limits held per process (warning + metric);
    # closed = calls that need them answer 503 redis_unavailable with retry-after.
    on_failure: Literal["open", "closed"] = "open"
    # Budget reservations live this long unless the holding instance renews them (a heartbeat while
    # the call runs): a crashed instance's holds are reclaimed after about this many seconds.
    lease_s: float = Field(15.0, ge=1.0, le=3600.0)

    @field_validator("url")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


class BudgetsConfig(Strict):
    # A budgeted key may call a model with no known price (table or config) only when this is set:
    # such calls are then metered at $0.
    allow_unpriced: bool = False


class UsageConfig(Strict):
    # Durable local spool for usage records (default: beside a SQLite store, else ./fluxway-spool).
    spool_dir: str | None = None
    # Spooled records are written to the store at least this often ...
    flush_interval_ms: float = Field(200.0, gt=0)
    # ... or as soon as this many are waiting.
    batch_size: int = Field(500, ge=1)
    # Records waiting for the store kept in memory at most (a saturated process or a slow store):
    # past it they are read back from the spool file when stored (their bodies are then `lost`).
    max_in_memory: int = Field(20000, ge=1)
    # Minute rollups (the finest grain of /admin/usage) are kept this many hours; hour and day rows
    # stay. A range reaching further back reads its edge minutes from the usage records.
    minute_rollups_hours: float = Field(48.0, ge=1)
    # Usage and log queries (/admin/usage, /admin/logs, /v1/me/usage, GraphQL) first have the records
    # still waiting stored, so they see every finished call, waiting this long at most: a saturated
    # gateway's backlog takes longer, and its queries then answer from what is stored (the backlog's
    # flush goes on).
    query_flush_wait_ms: float = Field(500.0, ge=0)


class PriceConfig(Strict):
    # USD per million prompt tokens.
    input_per_mtok: float = Field(0.0, ge=0)
    # USD per million completion tokens.
    output_per_mtok: float = Field(0.0, ge=0)
    # USD per million cached prompt tokens (default: the input price).
    cached_input_per_mtok: float | None = Field(None, ge=0)
    # USD per generated image (`/v1/images/generations`).
    per_image: float | None = Field(None, ge=0)
    # USD per second of transcribed audio (`/v1/audio/transcriptions`).
    per_audio_second: float | None = Field(None, ge=0)
    # USD per million characters of speech input (`/v1/audio/speech`).
    per_mchar: float | None = Field(None, ge=0)

    def to_price(self) -> Price:
        return Price(self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok,
                     self.per_image, self.per_audio_second, self.per_mchar)


class TargetConfig(Strict):
    # A provider's `name`.
    provider: str
    # The model name the provider knows (Azure: the deployment).
    model: str = Field(min_length=1)
    # Share of the weighted strategy's picks; 0 = a standby used only after the others.
    weight: float = Field(1.0, ge=0)
    # This target's price (default: the model catalog's, fluxway/data/models.json; exact names only).
    price: PriceConfig | None = None
    # What this target can do, replacing the catalog's flags (tools, vision, json_schema, reasoning,
    # audio, embeddings, prompt_caching, pdf, web_search, image_generation, rerank); shown in
    # /v1/models' `x_fluxway`.
    capabilities: tuple[str, ...] | None = None

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(v or ()) - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
        return v

    def to_target(self) -> Target:
        return Target(self.provider, self.model, self.weight, self.price.to_price() if self.price else None)


class RetryConfig(Strict):
    # Tries per target for retryable errors (overload, timeouts, 5xx, connect), the first included.
    attempts: int = Field(2, ge=1, le=10)
    # Backoff before the first retry, doubled each further retry (with jitter).
    backoff_ms: float = Field(100.0, ge=0)
    # The cap on the backoff.
    max_backoff_ms: float = Field(2000.0, ge=0)


class HedgeConfig(Strict):
    # Start the same request on the next target when the first has produced no first byte after
    # this long; None: after the first target's observed p95 time to first byte.
    after_ms: float | None = Field(None, gt=0)
    # Extra targets started at most (one more after each further delay).
    max_extra: int = Field(1, ge=1, le=4)


class ModelConfig(Strict):
    # The public model name clients send.
    name: str = Field(min_length=1)
    # Which target goes first: weighted round-robin, config order (fallback), lowest time to first
    # byte (latency), fewest in flight (least-busy) or lowest price (cost); the others follow.
    strategy: Strategy = "weighted"
    # Where calls to this model go.
    targets: tuple[TargetConfig, ...] = Field(min_length=1)
    # Other public models tried, in order, when every target failed.
    fallbacks: tuple[str, ...] = ()
    # Retries on each target.
    retry: RetryConfig = RetryConfig()
    # Timeouts for this model's calls, instead of each provider's.
    timeout: TimeoutConfig | None = None
    # Another public model (with larger context windows) tried when a target reports context_length.
    context_fallback: str | None = None
    # Opt-in hedged requests (`hedge: {}` or `hedge: true` for the defaults).
    hedge: HedgeConfig | None = None
    # Opt-in mid-stream failover: a stream broken after partial output continues on another target.
    stream_failover: bool = False

    @field_validator("hedge", mode="before")
    @classmethod
    def _hedge_flag(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v


class BreakerConfig(Strict):
    """Circuit breakers per target and per provider key (see routing/health.py)."""

    # Consecutive failures that open a breaker.
    failure_threshold: int = Field(5, ge=1)
    # Failure share over the window that opens a breaker ...
    failure_rate: float = Field(0.5, gt=0, le=1)
    # ... over a sliding window of this many seconds ...
    window_s: float = Field(30.0, gt=0)
    # ... once the window holds at least this many outcomes.
    min_volume: int = Field(10, ge=1)
    # Seconds an open breaker waits before letting a probe through (half-open).
    open_cooldown_s: float = Field(10.0, ge=0)
    # The open period doubles after each failed probe, up to this.
    max_open_cooldown_s: float = Field(300.0, ge=0)
    # Calls let through at once while half-open.
    half_open_probes: int = Field(1, ge=1)
    # Seconds a rate-limited key (or keyless target) cools when the 429 has no retry-after.
    rate_limit_cooldown_s: float = Field(5.0, ge=0)


class RoutingConfig(Strict):
    # Let clients address "<provider>/<model>" directly.
    allow_direct: bool = True
    # Circuit breakers.
    breaker: BreakerConfig = BreakerConfig()
    # Share of latency-strategy picks spent exploring untried or stale targets.
    explore: float = Field(0.05, ge=0, le=1)


class ResponsesConfig(Strict):
    # Stored responses (`POST /v1/responses` with `store` true, the default) are kept this many
    # days, then no longer served nor chained to with `previous_response_id`, and purged.
    retention_days: float = Field(30.0, gt=0)
    # The longest conversation (items) a follow-up may continue from with previous_response_id: past
    # it, 400 (a chain grows by its input and output every turn, and each turn re-sends all of it).
    max_items: int = Field(2000, ge=1)


class Config(Strict):
    # The HTTP server: address, limits on requests and connections, shutdown.
    server: ServerConfig = ServerConfig()
    # The admin credential (virtual keys live in the store: `fluxway keys`).
    auth: AuthConfig = AuthConfig()
    # The admin API's optional parts (GraphQL).
    admin: AdminConfig = AdminConfig()
    # The database of keys, teams and usage records.
    store: StoreConfig = StoreConfig()
    # Shared state for several processes or instances (rate limits, budgets).
    redis: RedisConfig = RedisConfig()
    # How usage records reach the store.
    usage: UsageConfig = UsageConfig()
    # Spend limits (set per key and team; docs/governance.md).
    budgets: BudgetsConfig = BudgetsConfig()
    # Metrics.
    observability: ObservabilityConfig = ObservabilityConfig()
    # Settings shared by every model's routing.
    routing: RoutingConfig = RoutingConfig()
    # The Responses API's stored responses (`POST /v1/responses`, `previous_response_id`).
    responses: ResponsesConfig = ResponsesConfig()
    # The upstream accounts: one entry per provider (a type, its keys, its base URL).
    providers: tuple[ProviderConfig, ...] = ()
    # The public models clients call, each routed to one or more provider targets.
    models: tuple[ModelConfig, ...] = ()
    # The hook stages, in order: pre hooks run in it, post hooks in reverse (fluxway.policy.pipeline).
    pipeline: tuple[str, ...] = DEFAULT_PIPELINE
    # Anomaly alerts: rules on error rate, latency p95, spend, budget use and breaker state, and
    # learned baselines; fired and resolved through the event sinks (docs/alerts.md).
    alerts: tuple[AlertRule, ...] = ()
    # Event sinks (webhook, redis_stream, nats): usage, key, budget, alert and breaker events are
    # delivered to each at least once, through an outbox in the store (docs/events.md).
    events: tuple[SinkConfig, ...] = ()
    # Upstream MCP servers whose tools `/mcp` serves to the keys allowed them (docs/mcp.md).
    mcp: McpConfig = McpConfig()
    # Tool loops: MCP tools Fluxway runs for the model in chat completions and the Responses API
    # (docs/tool-loops.md).
    tool_loop: ToolLoopConfig = ToolLoopConfig()

    def provider(self, name: str) -> ProviderConfig | None:
        for p in self.providers:
            if p.name == name:
                return p
        return None

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


# ---------------------------------------------------------------------------------------------
# Loading

_SINK_TYPES = frozenset({"webhook", "redis_stream", "nats"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def expand_env(tree: Any, env: Mapping[str, str], problems: list[str], loc: tuple[Any, ...] = ()) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(tree, dict):
        return {k: expand_env(v, env, problems, (*loc, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [expand_env(v, env, problems, (*loc, i)) for i, v in enumerate(tree)]
    if not isinstance(tree, str) or "${" not in tree:
        return tree

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                problems.append(f"{_path(loc)}: environment variable {name} is not set")
                return ""
            return default
        return value

    return _VAR.sub(repl, tree)


def _cross_check(cfg: Config) -> list[str]:
    problems: list[str] = validate_pipeline(cfg.pipeline)
    problems.extend(sink_problems(cfg.events, cfg.redis.url))
    problems.extend(mcp_problems(cfg.mcp))
    seen: set[str] = set()
    for i, p in enumerate(cfg.providers):
        if p.name in seen:
            problems.append(f"providers[{i}].name: duplicate provider name '{p.name}'")
        seen.add(p.name)
        problems.extend(f"providers[{i}].{problem}" for problem in p.problems())
    model_names: set[str] = set()
    for i, m in enumerate(cfg.models):
        if m.name in model_names:
            problems.append(f"models[{i}].name: duplicate model name '{m.name}'")
        model_names.add(m.name)
        for j, t in enumerate(m.targets):
            if t.provider not in seen:
                problems.append(f"models[{i}].targets[{j}].provider: unknown provider '{t.provider}'")
        if m.strategy == "weighted" and not any(t.weight > 0 for t in m.targets):
            problems.append(f"models[{i}].targets: weighted strategy needs a target with weight > 0")
    for i, m in enumerate(cfg.models):
        for j, fb in enumerate(m.fallbacks):
            if fb not in model_names:
                problems.append(f"models[{i}].fallbacks[{j}]: unknown model '{fb}'")
            elif fb == m.name:
                problems.append(f"models[{i}].fallbacks[{j}]: a model cannot fall back to itself")
        if m.context_fallback is not None:
            if m.context_fallback not in model_names:
                problems.append(f"models[{i}].context_fallback: unknown model '{m.context_fallback}'")
            elif m.context_fallback == m.name:
                problems.append(f"models[{i}].context_fallback: a model cannot fall back to itself")
    # Alert notify names are checked against the `events` sinks once the config has that section.
    problems.extend(alert_problems(cfg.alerts, cfg))
    return problems


def config_warnings(cfg: Config) -> list[str]:
    """What a valid config may not do as its author expects: a provider whose API keys come from
    unset environment variables, a model with ``stream_failover`` whose targets cannot all continue a
    partial answer (those are skipped on a failover)."""
    out: list[str] = [
        f"providers[{i}].api_keys: empty because {' / '.join(p.unset_key_vars)} is not set: calls to"
        f" provider '{p.name}' fail (or fall back) until it is"
        for i, p in enumerate(cfg.providers)
        if p.unset_key_vars
    ]
    providers = {p.name: p for p in cfg.providers}
    for i, m in enumerate(cfg.models):
        if not m.stream_failover:
            continue
        cannot = [
            f"{t.provider}/{t.model}"
            for t in m.targets
            if t.provider in providers and providers[t.provider].continuation_for(t.model) == "none"
        ]
        if not cannot:
            continue
        where = f"models[{i}] '{m.name}': stream_failover is on but target(s) {', '.join(cannot)}"
        if len(cannot) == len(m.targets):
            out.append(
                f"{where} cannot continue a partial answer (continuation: none): a stream that"
                " breaks after output ends with an error event"
            )
        else:
            out.append(
                f"{where} cannot continue a partial answer (continuation: none): a failover skips"
                " them; set the provider's continuation if its server supports one"
            )
    return out


def _with_env(cfg: Config, env: Mapping[str, str]) -> Config:
    """Each provider with what its type takes from the environment (Bedrock: the AWS_* variables)."""
    providers = tuple(p.with_env(env) for p in cfg.providers)
    changed = any(new is not old for new, old in zip(providers, cfg.providers, strict=True))
    return cfg.model_copy(update={"providers": providers}) if changed else cfg


def _key_vars(data: dict[str, Any]) -> dict[int, tuple[str, ...]]:
    """Per provider index, the environment variables its ``api_keys`` name (before expansion)."""
    out: dict[int, tuple[str, ...]] = {}
    providers = data.get("providers")
    if not isinstance(providers, list):
        return out
    for i, p in enumerate(providers):
        keys = p.get("api_keys") if isinstance(p, dict) else None
        if isinstance(keys, str):
            keys = [keys]
        if isinstance(keys, list):
            names = tuple(m.group(1) for k in keys if isinstance(k, str) for m in _VAR.finditer(k))
            if names:
                out[i] = names
    return out


def parse(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML tree."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(root): the config must be a mapping"])
    key_vars = _key_vars(data)
    data = expand_env(data, os.environ if env is None else env, problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            loc = err["loc"]
            if loc[:1] == ("providers",) and len(loc) > 2 and loc[2] in TAGS:
                loc = (*loc[:2], *loc[3:])  # the settings class a provider's type chose
            elif loc[:1] == ("events",) and len(loc) > 2 and loc[2] in _SINK_TYPES:
                loc = (*loc[:2], *loc[3:])  # the sink model its type chose
            problems.append(f"{_path(loc)}: {msg}")
        raise ConfigError(problems) from None
    for i, p in enumerate(cfg.providers):
        if not p.api_keys and key_vars.get(i):
            p.mark_unset_key_vars(key_vars[i])
    cfg = _with_env(cfg, os.environ if env is None else env)
    problems.extend(_cross_check(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate a YAML config file."""
    import yaml  # only a config file needs it: embedding apps build a Config in code

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): invalid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    return resolve_paths(parse(data, env), Path(path).resolve().parent)


def _sqlite_file(url: str) -> tuple[str, str, str] | None:
    """(scheme up to and including ':///', database path, query) of a file SQLite URL; else None."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return None
    db, q, query = rest.partition("?")
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return scheme + sep, db, q + query


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative paths in a config file (the SQLite file, the spool) are relative to its folder (SPEC
    §2): every command reads the same store whatever the working directory."""
    update: dict[str, Any] = {}
    parts = _sqlite_file(cfg.store.url)
    if parts is not None and not Path(parts[1]).is_absolute():
        update["store"] = cfg.store.model_copy(
            update={"url": f"{parts[0]}{(base / parts[1]).resolve()}{parts[2]}"}
        )
    spool = cfg.usage.spool_dir
    if spool and not Path(spool).is_absolute():
        update["usage"] = cfg.usage.model_copy(update={"spool_dir": str((base / spool).resolve())})
    return cfg.model_copy(update=update) if update else cfg


def env_config_path() -> str | None:
    """The config path from ``FLUXWAY_CONFIG``, if set."""
    return os.environ.get("FLUXWAY_CONFIG") or None
