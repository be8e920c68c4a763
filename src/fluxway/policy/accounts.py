"""Managing keys and teams (behind the admin API and ``fluxway keys``): validate, store, propagate.

Each change is written to the store, applied to this process's key cache at once, and published so
other instances refresh theirs.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from fluxway.errors import GatewayError, bad_request
from fluxway.policy.keys import KeyCache, generate_secret, hash_secret, visible_prefix
from fluxway.store import Store

if TYPE_CHECKING:
    from fluxway.events import EventBus

Period = Literal["daily", "monthly", "total"]
Role = Literal["user", "admin"]
Row = dict[str, Any]
Notify = Callable[[str], Awaitable[None]]


# Bounds of what the store holds (rpm/tpm are 32-bit integer columns; budgets become integer
# nano-dollars in the ledger, so at most 1e9 USD keeps them within 64 bits). Bad input is a 400
# naming the field, never a store error.
INT32_MAX = 2**31 - 1
MAX_BUDGET_USD = 1e9
MAX_METADATA_BYTES = 16384
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (NUL included)")
    return value


def _plain_json(value: Any, depth: int = 0) -> None:
    if depth > 16:
        raise ValueError("nested too deeply (at most 16 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            _plain_json(k, depth + 1)
            _plain_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _plain_json(v, depth + 1)


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    _plain_json(value)
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Usd = Annotated[float, Field(ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)]
Name = Annotated[str, Field(max_length=256), AfterValidator(_no_control)]
TeamName = Annotated[str, Field(max_length=128), AfterValidator(_no_control)]
ModelGlob = Annotated[str, Field(max_length=256), AfterValidator(_no_control)]
Models = Annotated[list[ModelGlob], Field(max_length=1024)]
# MCP tool globs over `<server>.<tool>` (`docs.*`, `files.read`); [] denies every tool.
ToolGlobs = Annotated[list[ModelGlob], Field(max_length=1024)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetIn(_Payload):
    amount_usd: Usd
    period: Period = "monthly"


class LimitIn(_Payload):
    rpm: Count | None = None
    tpm: Count | None = None


ModelLimits = Annotated[dict[ModelGlob, LimitIn], Field(max_length=1024, description="per model glob: {rpm, tpm}")]
def _expiry(d: datetime) -> datetime:
    try:
        ts = (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()
    except (OverflowError, ValueError, OSError):
        ts = -1.0
    if not 0.0 <= ts <= 253402300799.0:  # shown back in UTC: 1970-01-01 .. 9999-12-31
        raise ValueError("must be a time between 1970 and 9999 (UTC)")
    return d


Expiry = Annotated[datetime, AfterValidator(_expiry)]


class KeyCreate(_Payload):
    name: Name | None = None
    owner: Name | None = None
    team: TeamName | None = None
    models: Models | None = None
    mcp_tools: ToolGlobs | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    model_limits: ModelLimits | None = None
    budget: BudgetIn | None = None
    expires_at: Expiry | None = None
    role: Role = "user"
    metadata: Metadata | None = None


class KeyUpdate(_Payload):
    """Only the fields sent change; an explicit null clears one."""

    name: Name | None = None
    owner: Name | None = None
    team: TeamName | None = None
    models: Models | None = None
    mcp_tools: ToolGlobs | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    model_limits: ModelLimits | None = None
    budget: BudgetIn | None = None
    expires_at: Expiry | None = None
    role: Role | None = None
    metadata: Metadata | None = None


class TeamCreate(_Payload):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    models: Models | None = None
    mcp_tools: ToolGlobs | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    budget: BudgetIn | None = None
    metadata: Metadata | None = None


class TeamUpdate(_Payload):
    models: Models | None = None
    mcp_tools: ToolGlobs | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    budget: BudgetIn | None = None
    metadata: Metadata | None = None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def epoch(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _budget_out(row: Row) -> dict[str, Any] | None:
    if row.get("budget_usd") is None:
        return None
    return {"amount_usd": row["budget_usd"], "period": row.get("budget_period") or "monthly"}


def key_out(row: Row) -> dict[str, Any]:
    """A key as the admin API shows it (never its hash)."""
    return {
        "id": row["id"],
        "object": "key",
        "name": row.get("name"),
        "owner": row.get("owner"),
        "prefix": row["prefix"],
        "role": row["role"],
        "team": row.get("team"),
        "models": row.get("models"),
        "mcp_tools": row.get("mcp_tools"),
        "rpm": row.get("rpm"),
        "tpm": row.get("tpm"),
        "model_limits": row.get("model_limits"),
        "budget": _budget_out(row),
        "expires_at": iso(row.get("expires_at")),
        "metadata": row.get("metadata") or {},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "revoked": row.get("revoked_at") is not None,
        "revoked_at": iso(row.get("revoked_at")),
    }


def team_out(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "team",
        "name": row["id"],
        "models": row.get("models"),
        "mcp_tools": row.get("mcp_tools"),
        "rpm": row.get("rpm"),
        "tpm": row.get("tpm"),
        "budget": _budget_out(row),
        "metadata": row.get("metadata") or {},
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def not_found(what: str, ident: str) -> GatewayError:
    return GatewayError(404, f"{what} '{ident}' not found", code="not_found")


def _check_globs(models: list[str] | None, field: str = "models") -> None:
    if models is None:
        return
    what = "model" if field == "models" else "tool"
    for i, m in enumerate(models):
        if not isinstance(m, str) or not m.strip():
            raise bad_request(f"{field}[{i}] must be a non-empty {what} name or glob", param=f"{field}[{i}]")


def _fields(payload: BaseModel) -> Row:
    """The columns a payload sets (only the fields it was given)."""
    out: Row = {}
    given = payload.model_fields_set
    for name in given:
        value = getattr(payload, name)
        if name == "budget":
            out["budget_usd"] = value.amount_usd if value is not None else None
            out["budget_period"] = value.period if value is not None else None
        elif name == "expires_at":
            out["expires_at"] = epoch(value)
        elif name == "metadata":
            out["metadata"] = value or {}
        elif name == "model_limits":
            out["model_limits"] = {k: v.model_dump() for k, v in value.items()} if value is not None else None
        elif name != "name" or not isinstance(payload, TeamCreate):
            out[name] = value
    return out


class Accounts:
    def __init__(
        self,
        store: Store,
        cache: KeyCache | None = None,
        *,
        clock: Callable[[], float] = time.time,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self._cache = cache
        self._clock = clock
        self._notify = notify
        self.events: EventBus | None = None  # set when event sinks are configured

    def _key_event(self, type_: str, row: Row) -> None:
        if self.events is not None:  # never the secret or its hash
            self.events.emit(type_, {
                "id": row["id"], "name": row.get("name"), "owner": row.get("owner"), "team": row.get("team"),
                "role": row.get("role"), "created_at": iso(row.get("created_at")),
                "revoked_at": iso(row.get("revoked_at")),
            })

    async def _changed(self, what: str) -> None:
        if self._notify is not None:
            await self._notify(what)

    # keys ----------------------------------------------------------------------------------

    async def create_key(self, p: KeyCreate) -> tuple[Row, str]:
        _check_globs(p.models)
        _check_globs(p.mcp_tools, "mcp_tools")
        if p.team is not None and await self.store.keys.get_team(p.team) is None:
            raise bad_request(f"team '{p.team}' does not exist; create it first", param="team")
        secret = generate_secret()
        now = self._clock()
        row: Row = {
            "id": "key_" + secrets.token_hex(8),
            "name": p.name,
            "owner": p.owner,
            "prefix": visible_prefix(secret),
            "key_hash": hash_secret(secret),
            "role": p.role,
            "team": p.team,
            "models": p.models,
            "mcp_tools": p.mcp_tools,
            "rpm": p.rpm,
            "tpm": p.tpm,
            "model_limits": {k: v.model_dump() for k, v in p.model_limits.items()} if p.model_limits else None,
            "budget_usd": p.budget.amount_usd if p.budget else None,
            "budget_period": p.budget.period if p.budget else None,
            "expires_at": epoch(p.expires_at),
            "metadata": p.metadata or {},
            "created_at": now,
            "updated_at": now,
            "revoked_at": None,
        }
        await self.store.keys.insert_key(row)
        if self._cache is not None:
            self._cache.apply_key(row)
        await self._changed(f"key:{row['id']}")
        self._key_event("key.created", row)
        return row, secret

    async def list_keys(self, team: str | None = None, include_revoked: bool = True) -> list[Row]:
        return await self.store.keys.list_keys(team=team, include_revoked=include_revoked)

    async def get_key(self, key_id: str) -> Row:
        row = await self.store.keys.get_key(key_id)
        if row is None:
            raise not_found("key", key_id)
        return row

    async def update_key(self, key_id: str, p: KeyUpdate) -> Row:
        _check_globs(p.models)
        _check_globs(p.mcp_tools, "mcp_tools")
        values = _fields(p)
        if values.get("role", "") is None:
            raise bad_request("role must be 'user' or 'admin'", param="role")
        if values.get("team") is not None and await self.store.keys.get_team(values["team"]) is None:
            raise bad_request(f"team '{values['team']}' does not exist; create it first", param="team")
        current = await self.get_key(key_id)
        if current.get("revoked_at") is not None:
            raise GatewayError(409, f"key '{key_id}' is revoked", code="conflict")
        values["updated_at"] = self._clock()
        row = await self.store.keys.update_key(key_id, values)
        if row is None:
            raise not_found("key", key_id)
        if self._cache is not None:
            self._cache.apply_key(row)
        await self._changed(f"key:{key_id}")
        return row

    async def revoke_key(self, key_id: str) -> Row:
        current = await self.get_key(key_id)
        if current.get("revoked_at") is not None:
            return current
        now = self._clock()
        row = await self.store.keys.update_key(key_id, {"revoked_at": now, "updated_at": now})
        if row is None:
            raise not_found("key", key_id)
        if self._cache is not None:
            self._cache.apply_key(row)
        await self._changed(f"key:{key_id}")
        self._key_event("key.revoked", row)
        return row

    # teams ---------------------------------------------------------------------------------

    async def create_team(self, p: TeamCreate) -> Row:
        _check_globs(p.models)
        _check_globs(p.mcp_tools, "mcp_tools")
        now = self._clock()
        row: Row = {
            "id": p.name,
            "models": None,
            "mcp_tools": None,
            "rpm": None,
            "tpm": None,
            "budget_usd": None,
            "budget_period": None,
            "metadata": {},
            "created_at": now,
            "updated_at": now,
        }
        row.update(_fields(p))
        if not await self.store.keys.insert_team(row):
            raise GatewayError(409, f"team '{p.name}' already exists", param="name", code="conflict")
        if self._cache is not None:
            self._cache.apply_team(p.name, row)
        await self._changed(f"team:{p.name}")
        return row

    async def list_teams(self) -> list[Row]:
        return await self.store.keys.list_teams()

    async def get_team(self, team_id: str) -> Row:
        row = await self.store.keys.get_team(team_id)
        if row is None:
            raise not_found("team", team_id)
        return row

    async def update_team(self, team_id: str, p: TeamUpdate) -> Row:
        _check_globs(p.models)
        _check_globs(p.mcp_tools, "mcp_tools")
        values = _fields(p)
        values["updated_at"] = self._clock()
        row = await self.store.keys.update_team(team_id, values)
        if row is None:
            raise not_found("team", team_id)
        if self._cache is not None:
            self._cache.apply_team(team_id, row)
        await self._changed(f"team:{team_id}")
        return row

    async def delete_team(self, team_id: str) -> None:
        await self.get_team(team_id)
        active = await self.store.keys.count_active_keys_of_team(team_id)
        if active:
            raise GatewayError(
                409, f"team '{team_id}' still has {active} active key(s); revoke or move them first", code="conflict"
            )
        await self.store.keys.delete_team(team_id)
        if self._cache is not None:
            self._cache.apply_team(team_id, None)
        await self._changed(f"team:{team_id}")
