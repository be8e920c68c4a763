"""``fluxway keys create/list/revoke``, ``fluxway teams create/list/update/delete`` and
``fluxway db upgrade``.

Keys and teams are managed either through a running gateway's admin API (``--url``, with the master key or an
admin key) or straight in the store named by the config (``--config``); in the latter case running
gateways learn of the change through Redis at once when ``redis.url`` is set, else within seconds.
Heavy modules are imported inside the commands so that ``fluxway --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluxway.config import Config
    from fluxway.policy.accounts import Accounts

Row = dict[str, Any]


class CliError(Exception):
    pass


def _config(args: argparse.Namespace) -> Config:
    from fluxway.config import ConfigError, env_config_path, load

    path = args.config or env_config_path()
    if not path:
        raise CliError("no config given: use --config FILE (or FLUXWAY_CONFIG), or --url for a running gateway")
    try:
        return load(path)
    except ConfigError as exc:
        raise CliError(f"{path}: " + "; ".join(exc.problems)) from None


# ---------------------------------------------------------------------------------------------
# Two back ends: the admin API of a running gateway, or the store itself


async def _http(args: argparse.Namespace, method: str, path: str, body: Row | None = None) -> Row:
    import aiohttp

    key = args.master_key
    if not key and (args.config or _has_env_config()):
        key = _config(args).auth.master_key
    headers = {"authorization": f"Bearer {key}"} if key else {}
    url = args.url.rstrip("/") + path
    try:
        async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            status = r.status
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}") from None
    except ValueError:
        raise CliError(f"{url} did not answer with JSON (is it a Fluxway gateway?)") from None
    if status >= 400:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        raise CliError(f"{status}: {err.get('message') or data}")
    return data if isinstance(data, dict) else {"data": data}


def _has_env_config() -> bool:
    from fluxway.config import env_config_path

    return env_config_path() is not None


async def _with_accounts(args: argparse.Namespace, fn: Callable[[Accounts], Awaitable[Row]]) -> Row:
    from fluxway.policy.accounts import Accounts
    from fluxway.policy.keys import INVALIDATION_CHANNEL
    from fluxway.store import Store

    cfg = _config(args)
    store = Store.open(cfg.store.url)
    redis: Any = None
    try:
        await store.upgrade()
        notify = None
        if cfg.redis.url:
            from fluxway.redis_client import create_redis

            redis = create_redis(cfg.redis.url, max_connections=1)

            async def notify(what: str) -> None:
                try:
                    await redis.publish(INVALIDATION_CHANNEL, what)
                except Exception as exc:
                    print(f"warning: could not notify running gateways through Redis: {exc}", file=sys.stderr)

        return await fn(Accounts(store, notify=notify))
    finally:
        if redis is not None:
            await redis.aclose()
        await store.close()


# ---------------------------------------------------------------------------------------------
# Commands


def _create_body(args: argparse.Namespace) -> Row:
    body: Row = {"role": args.role}
    if args.name:
        body["name"] = args.name
    if args.owner:
        body["owner"] = args.owner
    if args.team:
        body["team"] = args.team
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.rpm is not None:
        body["rpm"] = args.rpm
    if args.tpm is not None:
        body["tpm"] = args.tpm
    if args.budget is not None:
        body["budget"] = {"amount_usd": args.budget, "period": args.period}
    if args.expires:
        body["expires_at"] = args.expires
    return body


async def _create(args: argparse.Namespace) -> Row:
    body = _create_body(args)
    if args.url:
        return await _http(args, "POST", "/admin/keys", body)
    from pydantic import ValidationError

    from fluxway.errors import GatewayError
    from fluxway.policy.accounts import KeyCreate, key_out

    try:
        payload = KeyCreate.model_validate(body)
    except ValidationError as exc:
        raise CliError(str(exc)) from None

    async def go(acc: Accounts) -> Row:
        try:
            row, secret = await acc.create_key(payload)
        except GatewayError as exc:
            raise CliError(exc.message) from None
        return {**key_out(row), "key": secret}

    return await _with_accounts(args, go)


async def _list(args: argparse.Namespace) -> Row:
    if args.url:
        q = "?include_revoked=" + ("true" if args.all else "false")
        if args.team:
            q += f"&team={args.team}"
        return await _http(args, "GET", "/admin/keys" + q)
    from fluxway.policy.accounts import key_out

    async def go(acc: Accounts) -> Row:
        rows = await acc.list_keys(team=args.team, include_revoked=args.all)
        return {"object": "list", "data": [key_out(r) for r in rows]}

    return await _with_accounts(args, go)


async def _revoke(args: argparse.Namespace) -> Row:
    if args.url:
        return await _http(args, "DELETE", f"/admin/keys/{args.id}")
    from fluxway.errors import GatewayError
    from fluxway.policy.accounts import key_out

    async def go(acc: Accounts) -> Row:
        try:
            return key_out(await acc.revoke_key(args.id))
        except GatewayError as exc:
            raise CliError(exc.message) from None

    return await _with_accounts(args, go)


def _team_body(args: argparse.Namespace) -> Row:
    body: Row = {}
    if getattr(args, "name", None):
        body["name"] = args.name
    if args.models is not None:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.rpm is not None:
        body["rpm"] = args.rpm
    if args.tpm is not None:
        body["tpm"] = args.tpm
    if args.budget is not None:
        body["budget"] = {"amount_usd": args.budget, "period": args.period}
    return body


async def _team_call(args: argparse.Namespace, method: str, fn: Callable[[Accounts], Awaitable[Row]],
                     path: str, body: Row | None = None) -> Row:
    """One team operation, through the admin API (``--url``) or straight against the store."""
    if args.url:
        return await _http(args, method, path, body)
    from fluxway.errors import GatewayError

    async def go(acc: Accounts) -> Row:
        try:
            return await fn(acc)
        except GatewayError as exc:
            raise CliError(exc.message) from None

    return await _with_accounts(args, go)


def _payload(model: Any, body: Row) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise CliError(str(exc)) from None


async def _team_create(args: argparse.Namespace) -> Row:
    from fluxway.policy.accounts import TeamCreate, team_out

    body = _team_body(args)

    async def fn(acc: Accounts) -> Row:
        return team_out(await acc.create_team(_payload(TeamCreate, body)))

    return await _team_call(args, "POST", fn, "/admin/teams", body)


async def _team_list(args: argparse.Namespace) -> Row:
    from fluxway.policy.accounts import team_out

    async def fn(acc: Accounts) -> Row:
        return {"object": "list", "data": [team_out(r) for r in await acc.list_teams()]}

    return await _team_call(args, "GET", fn, "/admin/teams")


async def _team_update(args: argparse.Namespace) -> Row:
    from fluxway.policy.accounts import TeamUpdate, team_out

    body = _team_body(args)

    async def fn(acc: Accounts) -> Row:
        return team_out(await acc.update_team(args.id, _payload(TeamUpdate, body)))

    return await _team_call(args, "PATCH", fn, f"/admin/teams/{args.id}", body)


async def _team_delete(args: argparse.Namespace) -> Row:
    async def fn(acc: Accounts) -> Row:
        await acc.delete_team(args.id)
        return {"id": args.id, "object": "team", "deleted": True}

    return await _team_call(args, "DELETE", fn, f"/admin/teams/{args.id}")


def _print_team_table(rows: list[Row]) -> None:
    if not rows:
        print("no teams")
        return
    for r in rows:
        budget = r.get("budget") or {}
        spend = f"${budget['amount_usd']}/{budget['period']}" if budget else "-"
        models = ",".join(r.get("models") or []) or "*"
        print(f"{r['id']}  models={models}  rpm={r.get('rpm') or '-'}  tpm={r.get('tpm') or '-'}  budget={spend}")


async def _upgrade(args: argparse.Namespace) -> Row:
    from fluxway.store import Store
    from fluxway.store.migrate import head_revision

    cfg = _config(args)
    store = Store.open(cfg.store.url)
    try:
        rev = await store.upgrade()
    finally:
        await store.close()
    return {"ok": True, "database": store.dialect, "revision": rev, "head": head_revision()}


def _print_key_table(rows: list[Row]) -> None:
    if not rows:
        print("no keys")
        return
    cols = ["id", "name", "prefix", "team", "role", "status"]
    table = [
        [str(r.get("id")), str(r.get("name") or ""), str(r.get("prefix")), str(r.get("team") or ""),
         str(r.get("role")), "revoked" if r.get("revoked") else "active"]
        for r in rows
    ]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))


def _run(
    args: argparse.Namespace, fn: Callable[[argparse.Namespace], Coroutine[Any, Any, Row]], show: Callable[[Row], None]
) -> int:
    try:
        out: Row = asyncio.run(fn(args))
    except CliError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"fluxway: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        show(out)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    def show(out: Row) -> None:
        print(f"created key {out['id']} ({out.get('name') or 'unnamed'}, role {out['role']})")
        print(f"  {out['key']}")
        print("store this secret now: it is not shown again", file=sys.stderr)

    return _run(args, _create, show)


def cmd_keys_list(args: argparse.Namespace) -> int:
    return _run(args, _list, lambda out: _print_key_table(out.get("data", [])))


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    return _run(args, _revoke, lambda out: print(f"revoked key {out['id']}; it answers 401 from now on"))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    return _run(args, _upgrade, lambda out: print(f"{out['database']}: at revision {out['revision']}"))


def register(sub: Any) -> None:
    """Add ``keys``, ``teams`` and ``db`` to the ``fluxway`` command's sub-parsers."""

    def common(p: argparse.ArgumentParser, remote: bool = True) -> None:
        p.add_argument("--config", "-c", help="YAML config (or FLUXWAY_CONFIG): its store is used directly")
        if remote:
            p.add_argument("--url", help="a running gateway's base URL: use its admin API instead of the store")
            p.add_argument("--master-key", help="admin credential for --url (default: the config's auth.master_key)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    keys = sub.add_parser("keys", help="manage virtual keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)

    create = ksub.add_parser("create", help="create a key (its secret is printed once)")
    create.add_argument("--name")
    create.add_argument("--owner", help="who the key belongs to")
    create.add_argument("--team")
    create.add_argument("--models", help="comma-separated model names or globs (default: all)")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--budget", type=float, help="USD")
    create.add_argument("--period", default="monthly", choices=["daily", "monthly", "total"])
    create.add_argument("--expires", help="ISO 8601 time")
    create.add_argument("--role", default="user", choices=["user", "admin"])
    common(create)
    create.set_defaults(func=cmd_keys_create)

    lst = ksub.add_parser("list", help="list keys")
    lst.add_argument("--team")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    common(lst)
    lst.set_defaults(func=cmd_keys_list)

    revoke = ksub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    common(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)

    teams = sub.add_parser("teams", help="manage teams")
    tsub = teams.add_subparsers(dest="teams_command", required=True)

    def limits(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", help="comma-separated model names or globs the team's keys may use")
        p.add_argument("--rpm", type=int)
        p.add_argument("--tpm", type=int)
        p.add_argument("--budget", type=float, help="USD")
        p.add_argument("--period", default="monthly", choices=["daily", "monthly", "total"])

    tcreate = tsub.add_parser("create", help="create a team")
    tcreate.add_argument("name")
    limits(tcreate)
    common(tcreate)
    tcreate.set_defaults(func=lambda a: _run(a, _team_create, lambda out: print(f"created team {out['id']}")))

    tlist = tsub.add_parser("list", help="list teams")
    common(tlist)
    tlist.set_defaults(func=lambda a: _run(a, _team_list, lambda out: _print_team_table(out.get("data", []))))

    tupdate = tsub.add_parser("update", help="change a team's models, limits or budget")
    tupdate.add_argument("id")
    limits(tupdate)
    common(tupdate)
    tupdate.set_defaults(func=lambda a: _run(a, _team_update, lambda out: print(f"updated team {out['id']}")))

    tdelete = tsub.add_parser("delete", help="delete a team that has no active keys")
    tdelete.add_argument("id")
    common(tdelete)
    tdelete.set_defaults(func=lambda a: _run(a, _team_delete, lambda out: print(f"deleted team {out['id']}")))

    db = sub.add_parser("db", help="database tasks")
    dsub = db.add_subparsers(dest="db_command", required=True)
    up = dsub.add_parser("upgrade", help="apply the store's migrations (also done at every start)")
    common(up, remote=False)
    up.set_defaults(func=cmd_db_upgrade)
