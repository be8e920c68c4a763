"""The alert engine: fed once per call, evaluated in the background every ``interval_s``.

:meth:`AlertEngine.observe` (from the end of the inference handler, only when ``alerts`` are
configured) adds the call to the sliding window of every rule it matches: a few dict lookups and
integer bumps. :meth:`AlertEngine.evaluate` computes each rule's value per subject, and moves the
subject's state row (:class:`~fluxway.events.alerts.store.AlertStore`) to ``firing`` when it
breaches and back to ``ok`` when it no longer does; the caller that wins a move records it and
emits ``alert.fired`` / ``alert.resolved`` to the rule's ``notify`` sinks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxway.events.alerts.baseline import Baseline
from fluxway.events.alerts.settings import AlertingConfig, AlertRule
from fluxway.events.alerts.store import AlertStore, Transition, clean
from fluxway.events.alerts.windows import Window
from fluxway.routing.clock import Clock

if TYPE_CHECKING:
    from fluxway.events import EventBus
    from fluxway.policy.keys import BudgetLine

log = logging.getLogger("fluxway.alerts")

ALL = "*"  # the subject of a rule over all the calls it matches
# A budget line's use: (spent + reserved) / amount, given the line and the time.
BudgetUse = Callable[["BudgetLine", float], Awaitable[float]]
# The configured targets' breakers: target key -> open?
Breakers = Callable[[], Mapping[str, bool]]


@dataclass(slots=True)
class Reading:
    """One subject's value at an evaluation, and whether it breaches the rule."""

    subject: str
    value: float | None
    breach: bool
    threshold: float | None


@dataclass(slots=True)
class _Rule:
    cfg: AlertRule
    windows: dict[str, Window] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    lines: dict[str, BudgetLine] = field(default_factory=dict)  # budget scope -> line (budget_used)
    values: dict[str, Reading] = field(default_factory=dict)  # the last evaluation's

    def matches(self, model: str, provider: str | None, key: str | None, team: str | None) -> bool:
        c = self.cfg
        return (
            (c.model is None or c.model == model)
            and (c.provider is None or c.provider == provider)
            and (c.key is None or c.key == key)
            and (c.team is None or c.team == team)
        )


class AlertEngine:
    def __init__(
        self,
        rules: Sequence[AlertRule],
        settings: AlertingConfig,
        store: AlertStore,
        *,
        events: Callable[[], EventBus | None] = lambda: None,
        budget_use: BudgetUse | None = None,
        breakers: Breakers | None = None,
        target_models: Mapping[str, frozenset[str]] | None = None,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.clock = clock
        self._budget_use = budget_use
        self._breakers = breakers
        self._target_models = target_models or {}  # target key -> public models routing to it
        self.rules: dict[str, _Rule] = {r.name: _Rule(r) for r in rules}
        self._windowed = tuple(r for r in self.rules.values() if r.cfg.window is not None)
        self._budgeted = tuple(r for r in self.rules.values() if r.cfg.metric == "budget_used")
        self.firing: dict[str, int] = dict.fromkeys(self.rules, 0)  # subjects firing, per rule
        self.transitions: Counter[tuple[str, str]] = Counter()  # (rule, fired | resolved) made here
        self.states: dict[tuple[str, str], dict[str, Any]] = {}  # the store's rows, as last read

    # -- feed ------------------------------------------------------------------------------------

    def observe(
        self,
        model: str,
        provider: str | None,
        key: str | None,
        team: str | None,
        status: int,
        latency_ms: float,
        cost_usd: float,
        budgets: Sequence[BudgetLine] = (),
    ) -> None:
        """One finished call (a client that went away, 499, is not counted)."""
        if status == 499:
            return
        now = self.clock()
        error = status >= 500
        for r in self._windowed:
            if not r.matches(model, provider, key, team):
                continue
            per = r.cfg.per
            if per is None:
                subject = ALL
            else:
                value = model if per == "model" else provider if per == "provider" else key if per == "key" else team
                if value is None:
                    continue
                subject = f"{per}={value}"
            w = r.windows.get(subject)
            if w is None:
                w = self._new_window(r, subject)
            w.add(now, error=error, latency_ms=latency_ms, cost_usd=cost_usd)
        if budgets:
            for r in self._budgeted:
                for line in budgets:
                    kind, _, ident = line.scope.partition(":")
                    if (r.cfg.key is None or (kind == "key" and ident == r.cfg.key)) and (
                        r.cfg.team is None or (kind == "team" and ident == r.cfg.team)
                    ):
                        self._remember(r.lines, line.scope, line)

    def _new_window(self, r: _Rule, subject: str) -> Window:
        if len(r.windows) >= self.settings.max_subjects:  # bounded: the longest idle goes
            idle = min(r.windows, key=lambda s: r.windows[s].last_seen)
            del r.windows[idle]
            r.baselines.pop(idle, None)
        assert r.cfg.window is not None
        w = r.windows[subject] = Window(r.cfg.window, latency=r.cfg.metric == "latency_p95_ms")
        return w

    def _remember(self, lines: dict[str, BudgetLine], scope: str, line: BudgetLine) -> None:
        if scope not in lines and len(lines) >= self.settings.max_subjects:
            del lines[next(iter(lines))]
        lines.pop(scope, None)
        lines[scope] = line  # most recently seen last

    # -- evaluation ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate every ``interval_s`` until cancelled (a failed evaluation is logged and retried)."""
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("alert evaluation failed (retrying in %.1fs): %s", self.settings.interval_s, exc)

    async def readings(self, r: _Rule, now: float) -> list[Reading]:
        """Each subject's value now and whether it breaches ``r``."""
        c = r.cfg
        out: list[Reading] = []
        if c.metric == "breaker_open":
            for target, is_open in sorted((self._breakers() if self._breakers else {}).items()):
                if c.provider is not None and target.partition("/")[0] != c.provider:
                    continue
                if c.model is not None and c.model not in self._target_models.get(target, frozenset()):
                    continue
                out.append(self._judge(c, f"target={target}", 1.0 if is_open else 0.0))
            return out
        if c.metric == "budget_used":
            if self._budget_use is None:
                return out
            for scope, line in list(r.lines.items()):
                out.append(self._judge(c, scope, await self._budget_use(line, now)))
            return out
        assert c.window is not None
        for subject, w in list(r.windows.items()):
            if now - w.last_seen > 2 * c.window and not self._is_firing(c.name, subject):
                del r.windows[subject]  # idle: forget it (its baseline too)
                r.baselines.pop(subject, None)
                continue
            value = self._window_value(c, w, now)
            if c.baseline is None:
                out.append(self._judge(c, subject, value))
                continue
            b = r.baselines.get(subject)
            if b is None:
                bc = c.baseline
                b = r.baselines[subject] = Baseline(
                    sigmas=bc.sigmas, min_samples=bc.min_samples, half_life=bc.half_life, min_change=bc.min_change
                )
            if value is None:
                out.append(Reading(subject, None, False, b.threshold()))
                continue
            verdict = b.check(value, now)
            out.append(Reading(subject, value, verdict.spike, verdict.threshold))
        return out

    def _window_value(self, c: AlertRule, w: Window, now: float) -> float | None:
        if c.metric == "spend_usd":
            return w.spend(now)
        if w.requests(now) < c.min_requests:
            return None  # too few calls for a verdict: counts as ok
        if c.metric == "error_rate":
            return w.error_rate(now)
        return w.latency_quantile(now, 0.95)

    @staticmethod
    def _judge(c: AlertRule, subject: str, value: float | None) -> Reading:
        if value is None:
            return Reading(subject, None, False, c.above if c.above is not None else c.below)
        if c.above is not None:
            return Reading(subject, value, value > c.above, c.above)
        assert c.below is not None
        return Reading(subject, value, value < c.below, c.below)

    def _is_firing(self, rule: str, subject: str) -> bool:
        row = self.states.get((rule, clean(subject, 400)))
        return row is not None and row["state"] == "firing"

    async def evaluate(self) -> list[Transition]:
        """One evaluation of every rule; returns the transitions this instance made."""
        now = self.clock()
        self.states = {(s["rule"], s["subject"]): s for s in await self.store.states()}
        made: list[Transition] = []
        for name, r in self.rules.items():
            c = r.cfg
            readings = await self.readings(r, now)
            r.values = {x.subject: x for x in readings}
            seen: set[str] = set()
            still: list[str] = []
            for x in readings:
                subject = clean(x.subject, 400)
                seen.add(subject)
                firing = self._is_firing(name, subject)
                if x.breach and firing:
                    still.append(subject)
                elif x.breach != firing:
                    t = Transition(name, subject, c.metric, "firing" if x.breach else "ok", x.value, x.threshold,
                                   now, c.cooldown)
                    if await self._move(c, t):
                        made.append(t)
            await self.store.still_firing(name, still, now)
            # Firing alerts no subject here has data for: another instance's, or this one's before a
            # restart. Resolved once nobody has seen them breaching for a window and three evaluations.
            stale_after = (c.window or 0.0) + 3 * self.settings.interval_s
            for (rule, subject), row in self.states.items():
                if rule != name or subject in seen or row["state"] != "firing":
                    continue
                if now - float(row.get("checked_at") or row["since"]) > stale_after:
                    t = Transition(name, subject, c.metric, "ok", None, row.get("threshold"), now, c.cooldown)
                    if await self._move(c, t):
                        made.append(t)
        rows = await self.store.states()
        self.states = {(s["rule"], s["subject"]): s for s in rows}
        self.firing = dict.fromkeys(self.rules, 0)
        for s in rows:
            if s["state"] == "firing" and s["rule"] in self.firing:
                self.firing[s["rule"]] += 1
        return made

    async def _move(self, c: AlertRule, t: Transition) -> bool:
        if not await self.store.transition(t):
            return False  # another instance made it first, or the cool-down is not over
        kind = "fired" if t.to == "firing" else "resolved"
        self.transitions[(c.name, kind)] += 1
        log.warning("alert %s %s: %s %s = %s (threshold %s)", c.name, kind, t.subject, c.metric, t.value,
                    t.threshold)
        bus = self.events()
        if bus is not None:
            bus.emit(f"alert.{kind}", self.event_data(c, t), sinks=c.notify)
        return True

    @staticmethod
    def event_data(c: AlertRule, t: Transition) -> dict[str, Any]:
        op = "baseline" if c.baseline is not None else ("above" if c.above is not None else "below")
        return {
            "rule": c.name,
            "metric": c.metric,
            "subject": t.subject,
            "state": t.to,
            "value": t.value,
            "threshold": t.threshold,
            "op": op,
            "window_s": c.window,
            "at": t.at,
            "filters": {k: v for k, v in (("model", c.model), ("provider", c.provider), ("key", c.key),
                                           ("team", c.team)) if v is not None},
        }
