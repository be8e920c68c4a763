"""Alert state and history in the store (tables ``alert_states`` and ``alert_history``).

:meth:`AlertStore.transition` moves one rule+subject between ``ok`` and ``firing`` with a
conditional UPDATE (``... WHERE state = 'ok' AND <cool-down over>``): of several instances sharing
the store, exactly one wins each transition, writes its history row and emits its event.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxway.store.tables import alert_history, alert_states

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SUBJECT_MAX = 400


def clean(value: str, limit: int) -> str:
    """A string as the alert tables hold it: no control characters, cut to the column length."""
    return _CONTROL.sub("", value)[:limit]


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


@dataclass(frozen=True, slots=True)
class Transition:
    rule: str
    subject: str
    metric: str
    to: str  # "firing" | "ok"
    value: float | None
    threshold: float | None
    at: float
    cooldown: float = 0.0


class AlertStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def states(self) -> list[dict[str, Any]]:
        c = alert_states.c
        q = sa.select(alert_states).order_by(c.rule, c.subject)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings()]

    async def _ensure(self, conn: AsyncConnection, rule: str, subject: str, now: float) -> None:
        row = {"rule": rule, "subject": subject, "state": "ok", "since": now}
        ins: Any
        if conn.dialect.name == "postgresql":
            ins = postgresql.insert(alert_states).values(**row).on_conflict_do_nothing()
        else:
            ins = sqlite.insert(alert_states).values(**row).on_conflict_do_nothing()
        await conn.execute(ins)

    async def transition(self, t: Transition) -> bool:
        """Make the move if the state row allows it; True when this caller made it."""
        rule, subject = clean(t.rule, 64), clean(t.subject, SUBJECT_MAX)
        value, threshold = _num(t.value), _num(t.threshold)
        c = alert_states.c
        where = [c.rule == rule, c.subject == subject]
        values: dict[str, Any] = {"state": t.to, "value": value, "threshold": threshold, "since": t.at,
                                  "checked_at": t.at}
        if t.to == "firing":
            where.append(c.state == "ok")
            where.append(sa.or_(c.resolved_at.is_(None), c.resolved_at <= t.at - t.cooldown))
        else:
            where.append(c.state == "firing")
            values["resolved_at"] = t.at
        async with self._engine.begin() as conn:
            await self._ensure(conn, rule, subject, t.at)
            done = await conn.execute(sa.update(alert_states).where(*where).values(**values))
            if done.rowcount != 1:
                return False
            await conn.execute(
                sa.insert(alert_history).values(
                    at=t.at, rule=rule, subject=subject, kind="fired" if t.to == "firing" else "resolved",
                    metric=t.metric, value=value, threshold=threshold,
                )
            )
        return True

    async def still_firing(self, rule: str, subjects: list[str], now: float) -> None:
        """Mark firing alerts as still seen breaching (others resolve them only once this is stale)."""
        if not subjects:
            return
        c = alert_states.c
        subs = [clean(s, SUBJECT_MAX) for s in subjects]
        q = sa.update(alert_states).where(c.rule == clean(rule, 64), c.subject.in_(subs), c.state == "firing")
        async with self._engine.begin() as conn:
            await conn.execute(q.values(checked_at=now))

    async def history(
        self, *, rule: str | None = None, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Transitions newest first; one page and the cursor of the next (None at the end)."""
        c = alert_history.c
        q = sa.select(alert_history).order_by(c.id.desc()).limit(limit + 1)
        if rule is not None:
            q = q.where(c.rule == rule)
        if cursor is not None:
            q = q.where(c.id < cursor)
        async with self._engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(q)).mappings()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = int(rows[-1]["id"])
        return rows, nxt
