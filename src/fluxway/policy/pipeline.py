"""The hook pipeline: its order from config, and which hooks take part in each call.

``pipeline: [auth, limits, budget, usage]`` (the default; SPEC §2) names the stages. Pre hooks run
in that order; post hooks in reverse, so each hook wraps the ones after it (the usage recorder, last,
is the first to see the outcome). A post hook runs for every call it takes part in, whatever
happened, and finds its own :class:`~fluxway.policy.hooks.Slot` empty when its ``pre`` did not get
as far as filling it. Which hooks take part is resolved once per call, after auth, from each hook's
``applies(ctx)`` (the key's and team's settings, the model); hooks without one always do.

Stream hooks see each chunk in pipeline order; when no hook of a call has one, a stream is not
touched at all, and neither is it assembled unless a hook ``wants_response``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast

from fluxway.canonical import Endpoint, StreamChunk
from fluxway.policy.hooks import CallContext, Hook, Outcome, ShortCircuit, StreamHook
from fluxway.stream_result import StreamAssembler

log = logging.getLogger("fluxway.pipeline")

# Stage names a config may list, in the order the default applies them. guardrails and cache take
# part once their sections are configured (their hooks are not built otherwise).
STAGES = ("auth", "limits", "budget", "guardrails", "cache", "usage")
DEFAULT_PIPELINE = STAGES
REQUIRED_STAGES = ("auth", "usage")  # never dropped: who calls, and the record of every call


def validate_pipeline(order: Sequence[str]) -> list[str]:
    """What is wrong with a configured order (empty when it is fine), each with its index."""
    problems = []
    for i, name in enumerate(order):
        if name not in STAGES:
            problems.append(f"pipeline[{i}]: unknown stage {name!r}; known: {', '.join(STAGES)}")
        elif name in order[:i]:
            problems.append(f"pipeline[{i}]: {name!r} is listed twice")
    for name in REQUIRED_STAGES:
        if name not in order:
            problems.append(f"pipeline: {name!r} must be part of the pipeline")
    if "auth" in order and order[0] != "auth":
        problems.append("pipeline[0]: 'auth' must come first (the other stages need the caller)")
    return problems


def _is_stream_hook(hook: Hook) -> bool:
    return callable(getattr(hook, "chunk", None)) and callable(getattr(hook, "end", None))


class Pipeline:
    """The configured hooks, in order; :meth:`for_call` resolves the ones a call runs."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.replace(hooks)

    @classmethod
    def from_config(cls, order: Sequence[str], built: Mapping[str, Hook]) -> Pipeline:
        """The hooks ``order`` names, among those ``built`` (stages whose feature is configured)."""
        return cls([built[name] for name in order if name in built])

    def replace(self, hooks: Sequence[Hook]) -> None:
        """Swap the hooks (tests, and features that plug in after start-up)."""
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        self._conditional = any(callable(getattr(h, "applies", None)) for h in self.hooks)
        self._all = _CallPlan(self.hooks)

    def plan(self, ctx: CallContext) -> _CallPlan:
        """The hooks that take part in this call (asked once, after auth)."""
        if not self._conditional:
            return self._all
        taking_part = []
        for h in self.hooks:
            applies = getattr(h, "applies", None)
            if applies is None or applies(ctx):
                taking_part.append(h)
        return self._all if len(taking_part) == len(self.hooks) else _CallPlan(tuple(taking_part))

    def for_call(self, ctx: CallContext) -> CallHooks:
        return CallHooks(ctx, self.plan(ctx))


class _CallPlan:
    """One set of taking-part hooks, split by phase (shared by every call with that set)."""

    __slots__ = ("early", "hooks", "late", "stream", "wants_response")

    def __init__(self, hooks: tuple[Hook, ...]) -> None:
        self.hooks = hooks
        backwards = hooks[::-1]
        self.early = tuple(h for h in backwards if getattr(h, "before_send", False))
        self.late = tuple(h for h in backwards if not getattr(h, "before_send", False))
        self.stream = tuple(cast(StreamHook, h) for h in hooks if _is_stream_hook(h))
        self.wants_response = any(getattr(h, "wants_response", False) for h in hooks)


class CallHooks:
    """The pipeline as one call runs it: pre, the stream, then post (early and late), each once."""

    __slots__ = ("_assembler", "_early_done", "_plan", "ctx", "outcome")

    def __init__(self, ctx: CallContext, plan: _CallPlan) -> None:
        self.ctx = ctx
        self._plan = plan
        self._early_done = False
        self._assembler: StreamAssembler | None = None
        self.outcome: Outcome | None = None  # a stream's, once it has started (for a cut call)

    @property
    def wants_response(self) -> bool:
        return self._plan.wants_response

    async def pre(self) -> ShortCircuit | None:
        for hook in self._plan.hooks:
            short = await hook.pre(self.ctx)
            if short is not None:
                return short
        return None

    def watches_stream(self) -> bool:
        """Whether the stream's chunks must go through :meth:`stream` (else they go straight out)."""
        return bool(self._plan.stream) or self._plan.wants_response

    def _start(self) -> None:
        if self._plan.wants_response and self._assembler is None:
            self._assembler = StreamAssembler(self.ctx.request.endpoint is Endpoint.COMPLETIONS)

    async def through(self, chunks: Sequence[StreamChunk]) -> list[StreamChunk]:
        """The stream's first chunks as the stream hooks pass them on."""
        self._start()
        out: list[StreamChunk] = []
        for chunk in chunks:
            out.extend(await self._through(self._plan.stream, 0, chunk))
        return out

    async def stream(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        """The rest of the stream as the stream hooks pass it on, then what they still hold."""
        self._start()
        hooks = self._plan.stream
        async for chunk in chunks:
            for c in await self._through(hooks, 0, chunk):
                yield c
        for i, hook in enumerate(hooks):  # what each hook still holds, through the hooks after it
            for held in await hook.end(self.ctx):
                for c in await self._through(hooks, i + 1, held):
                    yield c

    async def _through(self, hooks: Sequence[StreamHook], start: int, chunk: StreamChunk) -> Sequence[StreamChunk]:
        """``chunk`` through ``hooks[start:]``; what comes out is what the client gets (and the
        assembled answer is made of)."""
        batch: Sequence[StreamChunk] = (chunk,)
        for hook in hooks[start:]:
            out: list[StreamChunk] = []
            for c in batch:
                out.extend(await hook.chunk(self.ctx, c))
            batch = out
            if not batch:
                break
        if self._assembler is not None:
            for c in batch:
                self._assembler.feed(c)
        return batch

    def settle_response(self, outcome: Outcome) -> None:
        """Give the post hooks the stream's assembled answer (when one of them wants it)."""
        if self._assembler is not None and outcome.response is None:
            outcome.response = self._assembler.response()

    async def post_early(self, outcome: Outcome) -> None:
        """The ``before_send`` post hooks (the usage record), once, before the answer's last bytes
        leave: every answer a client has seen then has its record, even if the process dies next."""
        if self._early_done:
            return
        self._early_done = True
        for hook in self._plan.early:
            try:
                await hook.post(self.ctx, outcome)
            except Exception:
                log.exception("request %s: post hook %s failed", self.ctx.request_id, hook.name)

    @property
    def early_done(self) -> bool:
        return self._early_done

    def early_hooks(self) -> tuple[Hook, ...]:
        return self._plan.early

    async def post_late(self, outcome: Outcome) -> None:
        await self.post_early(outcome)  # a no-op unless the call ended before it could run
        for hook in self._plan.late:
            try:
                await hook.post(self.ctx, outcome)
            except Exception:
                log.exception("request %s: post hook %s failed", self.ctx.request_id, hook.name)
