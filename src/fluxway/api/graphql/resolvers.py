"""The resolvers: each field that is not a plain value of its parent, over the REST API's functions.

Keys and teams come from :class:`fluxway.policy.accounts.Accounts` shaped by ``key_out`` and
``team_out``; usage from :func:`fluxway.api.admin_queries.usage_report`; logs from
:func:`fluxway.api.admin_queries.logs_page`: the values GET /admin/keys, /admin/teams, /admin/usage
and /admin/logs answer. Arguments are bounded as the REST routes bound their query parameters.

Prompt APIs are not in the gateway yet: ``prompts`` answers NOT_AVAILABLE. When they arrive, the
field is one resolver here: list them, then ``connection(rows, sort_key, kinds, first=..., after=...,
out=prompt_out)`` (the schema's ``Prompt`` type reads the snake_case keys of ``prompt_out``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import GraphQLResolveInfo

from fluxway.api.admin_queries import log_out, logs_page, parse_status, parse_time, usage_report
from fluxway.api.graphql.errors import NOT_AVAILABLE, bad_input, error
from fluxway.api.graphql.pagination import connection, page_size
from fluxway.config_observability import GraphqlConfig
from fluxway.errors import GatewayError
from fluxway.policy.accounts import iso, key_out, team_out
from fluxway.store.usage import encode_cursor

if TYPE_CHECKING:
    from fluxway.policy.governance import Governance

Row = dict[str, Any]
Resolver = Callable[..., Any]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Context:
    """One request's: the governance, the limits, and what its resolvers read more than once."""

    gov: Governance
    cfg: GraphqlConfig
    _keys: list[Row] | None = None
    _key_ids: dict[str, Row] | None = None
    _teams: dict[str, Row] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def all_keys(self) -> list[Row]:
        async with self._lock:
            if self._keys is None:
                self._keys = await self.gov.accounts.list_keys()
            return self._keys

    async def key_ids(self) -> dict[str, Row]:
        if self._key_ids is None:
            self._key_ids = {k["id"]: k for k in await self.all_keys()}
        return self._key_ids

    async def teams(self) -> dict[str, Row]:
        async with self._lock:
            if self._teams is None:
                self._teams = {t["id"]: t for t in await self.gov.accounts.list_teams()}
            return self._teams

    def page(self, first: int | None) -> int:
        return page_size(first, self.cfg.default_page_size, self.cfg.max_page_size)


def _ctx(info: GraphQLResolveInfo) -> Context:
    ctx = info.context
    assert isinstance(ctx, Context)
    return ctx


def _plain(value: str | None, param: str, max_len: int) -> str | None:
    """A string argument as the REST routes take their query strings: bounded, no control characters."""
    if value is not None and (len(value) > max_len or _CONTROL.search(value)):
        raise bad_input(f"'{param}' must be at most {max_len} characters, without control characters", param=param)
    return value


def _key_connection(rows: list[Row], first: int, after: str | None, revoked: bool | None,
                    role: str | None) -> Row:
    if revoked is not None:
        rows = [r for r in rows if (r.get("revoked_at") is not None) == revoked]
    if role is not None:
        rows = [r for r in rows if r.get("role") == role]
    return connection(rows, lambda r: (float(r["created_at"]), str(r["id"])), (float, str),
                      first=first, after=after, out=key_out)


# Query ---------------------------------------------------------------------------------------

async def keys(_: Any, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None,
               team: str | None = None, revoked: bool | None = None, role: str | None = None) -> Row:
    ctx = _ctx(info)
    n, team = ctx.page(first), _plain(team, "team", 128)
    _plain(after, "after", 512)
    rows = await ctx.gov.accounts.list_keys(team=team, include_revoked=revoked is not False)
    return _key_connection(rows, n, after, revoked, role)


async def key(_: Any, info: GraphQLResolveInfo, id: str) -> Row | None:
    try:
        return key_out(await _ctx(info).gov.accounts.get_key(_plain(id, "id", 64) or ""))
    except GatewayError as err:
        if err.status == 404:
            return None
        raise


async def teams(_: Any, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None) -> Row:
    ctx = _ctx(info)
    n = ctx.page(first)
    _plain(after, "after", 512)
    rows = await ctx.gov.accounts.list_teams()
    return connection(rows, lambda r: (str(r["id"]),), (str,), first=n, after=after, out=team_out)


async def team(_: Any, info: GraphQLResolveInfo, name: str) -> Row | None:
    try:
        return team_out(await _ctx(info).gov.accounts.get_team(_plain(name, "name", 128) or ""))
    except GatewayError as err:
        if err.status == 404:
            return None
        raise


async def usage(_: Any, info: GraphQLResolveInfo, groupBy: str | None = "KEY", since: str | None = None,
                until: str | None = None) -> Row:
    t0 = parse_time(_plain(since, "since", 64), "since")
    t1 = parse_time(_plain(until, "until", 64), "until")
    group = (groupBy or "KEY").lower()  # the enum's names are the store's groups, upper-cased; null: the default
    rows = await usage_report(_ctx(info).gov, group, t0, t1)
    out = []
    for r in rows:
        g = r.pop(group)
        out.append({"group": None if g is None else str(g), **r})
    return {"group_by": group.upper(), "since": iso(t0), "until": iso(t1), "rows": out}


async def logs(_: Any, info: GraphQLResolveInfo, key: str | None = None, model: str | None = None,
               status: str | None = None, since: str | None = None, until: str | None = None,
               first: int | None = None, after: str | None = None, bodies: bool = False) -> Row:
    ctx = _ctx(info)
    st = parse_status(_plain(status, "status", 16))
    t0 = parse_time(_plain(since, "since", 64), "since")
    t1 = parse_time(_plain(until, "until", 64), "until")
    try:
        rows, nxt = await logs_page(
            ctx.gov, key=_plain(key, "key", 64), model=_plain(model, "model", 256), status=st, since=t0, until=t1,
            limit=ctx.page(first), cursor=_plain(after, "after", 512), bodies=bool(bodies),
        )
    except GatewayError as err:
        if err.param == "cursor":
            raise bad_input("invalid cursor", param="after") from None
        raise
    edges = [{"cursor": encode_cursor(r["created_at"], r["id"]), "node": log_out(r)} for r in rows]
    return {"edges": edges,
            "page_info": {"has_next_page": nxt is not None, "end_cursor": edges[-1]["cursor"] if edges else None}}


async def prompts(_: Any, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None) -> Row:
    raise error("prompt APIs are not available in this gateway yet", NOT_AVAILABLE)


# Nested --------------------------------------------------------------------------------------

async def key_team(parent: Row, info: GraphQLResolveInfo) -> Row | None:
    name = parent.get("team")
    if name is None:
        return None
    row = (await _ctx(info).teams()).get(name)
    return team_out(row) if row is not None else None


async def team_keys(parent: Row, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None,
                    revoked: bool | None = None, role: str | None = None) -> Row:
    ctx = _ctx(info)
    n = ctx.page(first)
    _plain(after, "after", 512)
    rows = [r for r in await ctx.all_keys() if r.get("team") == parent["id"]]
    return _key_connection(rows, n, after, revoked, role)


async def log_key(parent: Row, info: GraphQLResolveInfo) -> Row | None:
    key_id = parent.get("key_id")
    if key_id is None:
        return None
    row = (await _ctx(info).key_ids()).get(key_id)
    return key_out(row) if row is not None else None


RESOLVERS: Mapping[str, Mapping[str, Resolver]] = {
    "Query": {
        "keys": keys, "key": key, "teams": teams, "team": team, "usage": usage, "logs": logs, "prompts": prompts,
    },
    "Key": {"teamDetails": key_team},
    "Team": {"keys": team_keys},
    "LogEntry": {"keyDetails": log_key},
}
