"""The admin API's read queries, shared by its REST routes, ``/v1/me/usage`` and ``/admin/graphql``.

Both surfaces call these, so they answer the same values: input is checked here (a bad value is a
400 :class:`GatewayError` naming the parameter), what is still spooled is flushed first, and rows
come back as the REST API shows them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from fluxway.errors import bad_request
from fluxway.policy.accounts import epoch, iso
from fluxway.store.usage import BadCursor

if TYPE_CHECKING:
    from fluxway.policy.governance import Governance

log = logging.getLogger("fluxway.admin")

Row = dict[str, Any]
LogStatus = int | Literal["success", "error"] | None
_MAX_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z


def parse_time(value: str | None, param: str) -> float | None:
    """ISO 8601 (``2025-01-31`` or ``2025-01-31T12:00:00Z``) or epoch seconds; naive times are UTC."""
    if value is None or value == "":
        return None
    t: float | None
    try:
        t = float(value)
    except ValueError:
        try:
            t = epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except (ValueError, OverflowError, OSError):
            t = None
    if t is None or not (0.0 <= t <= _MAX_EPOCH):  # NaN fails both comparisons
        raise bad_request(f"'{param}' must be an ISO 8601 time or epoch seconds (years 1970-9999)", param=param)
    return t


def parse_status(status: str | None) -> LogStatus:
    """A log filter: an HTTP status (100-999), ``success`` (below 400) or ``error``."""
    if status in ("success", "error"):
        return status  # type: ignore[return-value]
    if not status:
        return None
    try:
        st = int(status)
        if not 100 <= st <= 999:
            raise ValueError
    except ValueError:
        raise bad_request("'status' must be an HTTP status, 'success' or 'error'", param="status") from None
    return st


def usage_data(rows: list[Row], group_by: str) -> list[Row]:
    """Aggregate rows as the usage routes answer them: the group under its own name."""
    return [{group_by: r.pop("group"), **r} for r in rows]


async def flush_usage(gov: Governance) -> None:
    """Store what is still spooled, so a query sees it, waiting ``usage.query_flush_wait_ms`` at most
    (the flush itself is never cut short); a failure is logged (the query then tells)."""
    try:
        await asyncio.wait_for(asyncio.shield(gov.usage.flush()), gov.cfg.usage.query_flush_wait_ms / 1000.0)
    except TimeoutError:
        log.info("usage backlog still flushing: a query answers from what is stored")
    except Exception as exc:
        log.warning("usage not flushed before an admin query: %s", exc)


async def usage_report(gov: Governance, group_by: str, since: float | None, until: float | None) -> list[Row]:
    """``/admin/usage``'s rows: totals per group from the rollups; by key, each with the key's name."""
    await flush_usage(gov)
    data = usage_data(await gov.store.usage.aggregate(group_by, since, until), group_by)
    if group_by == "key":
        names = {k["id"]: k.get("name") for k in await gov.accounts.list_keys()}
        for d in data:
            d["name"] = "master key" if d["key"] == "master" else names.get(d["key"])
    return data


async def logs_page(
    gov: Governance,
    *,
    key: str | None = None,
    model: str | None = None,
    status: LogStatus = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
    cursor: str | None = None,
    bodies: bool = False,
) -> tuple[list[Row], str | None]:
    """One page of ``/admin/logs``, newest first, as stored (``created_at`` in epoch seconds; see
    :func:`log_out`), and the cursor of the next page (None at the end)."""
    await flush_usage(gov)
    try:
        return await gov.store.usage.logs(
            key_id=key, model=model, status=status, since=since, until=until, limit=limit, cursor=cursor,
            bodies=bodies,
        )
    except BadCursor:
        raise bad_request("invalid cursor", param="cursor") from None


def log_out(row: Row) -> Row:
    """A stored log row as the admin API shows it."""
    return {**row, "created_at": iso(row["created_at"])}
