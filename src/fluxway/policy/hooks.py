"""The hook seam: plug-ins that run around the executor without touching adapters.

A hook's ``pre`` may stop the call by raising :class:`GatewayError` (auth, limits) or by
returning a :class:`ShortCircuit` holding a ready answer (cache), whole or as a stream. ``post``
sees every outcome, success or failure, exactly once, with the final canonical response (for a
stream, the assembled one) when the hook asks for it; it must be cheap (enqueue, don't write). A
:class:`StreamHook` also sees each chunk of a stream and may pass, rewrite, hold back or drop it.
The order of the hooks comes from config (:mod:`fluxway.policy.pipeline`).

Per-call state is typed: a hook declares a :class:`Slot` for what it keeps between ``pre`` and
``post`` (``RESERVATION: Slot[Reservation] = Slot("budget")``) and reads it back with its type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from fluxway.canonical import CanonicalRequest, CanonicalResponse, StreamChunk, Target, Usage
from fluxway.errors import GatewayError

if TYPE_CHECKING:
    from fluxway.policy.keys import BudgetLine

ModelFilter = Callable[[str], bool]
T = TypeVar("T")


class Slot(Generic[T]):
    """A typed place in a call's state, owned by one hook (``ctx.put(SLOT, v)``, ``ctx.get(SLOT)``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


@dataclass(slots=True)
class Principal:
    """Who is calling: resolved by the auth hook."""

    id: str  # key id ("master" for the master key, "anonymous" when auth is off)
    role: str = "user"  # "admin" | "user"
    team: str | None = None
    name: str | None = None
    models: tuple[str, ...] | None = None  # allowed model globs; None: all
    # Rate limits that apply: ``{"scope": "key:<id>" | "team:<id>" | "key:<id>:model:<glob>", "rpm", "tpm"}``.
    limits: Sequence[Mapping[str, Any]] = ()
    budgets: Sequence[BudgetLine] = ()  # the key's and its team's budgets
    max_concurrency: int | None = None  # calls in flight at once (None: the server's default)
    # MCP tools (globs over `<server>.<tool>`) this key may list and call at /mcp; None: all. Once a
    # key (or its team) names any, every other tool is denied.
    mcp_tools: tuple[str, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def allows(self, model: str) -> bool:
        if self.models is None:
            return True
        return any(fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def model_filter(self) -> ModelFilter | None:
        """What the executor checks every fallback against; None when every model is allowed."""
        return None if self.models is None else self.allows

    def allows_tool(self, tool: str) -> bool:
        """May this key list and call the MCP tool ``tool`` (``<server>.<tool>``)?"""
        return globs_allow(self.mcp_tools, tool)


def globs_allow(globs: tuple[str, ...] | None, name: str) -> bool:
    """None allows everything; otherwise ``name`` must match one of the globs (so ``()`` allows nothing)."""
    return globs is None or any(fnmatchcase(name, pattern) for pattern in globs)


@dataclass(slots=True)
class CallContext:
    request_id: str
    ingress: str  # "openai" | "anthropic" | "responses"
    headers: Mapping[str, str]  # request headers, lower-case names
    api_key: str | None
    request: CanonicalRequest
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    # Extra response headers hooks want sent (x-ratelimit-*, ...).
    response_headers: dict[str, str] = field(default_factory=dict)
    # Why a stream ended early (the client went away, a shutdown, an upstream failure), for the record.
    partial: str | None = None
    prompt_tokens: int | None = None  # Fluxway's own count of the prompt, once counted
    _slots: dict[Slot[Any], Any] = field(default_factory=dict)

    def put(self, slot: Slot[T], value: T) -> None:
        self._slots[slot] = value

    def get(self, slot: Slot[T]) -> T | None:
        return cast("T | None", self._slots.get(slot))

    def pop(self, slot: Slot[T]) -> T | None:
        return cast("T | None", self._slots.pop(slot, None))


@dataclass(slots=True)
class Outcome:
    """What happened to one call, as the post hooks and the usage log see it."""

    status: int  # HTTP status the client got (200 for a completed stream)
    target: Target | None = None
    attempts: int = 0
    usage: Usage | None = None
    error: GatewayError | None = None
    error_kind: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    upstream_ms: float = 0.0
    overhead_ms: float | None = None  # what the gateway added before the answer began (x-fluxway-overhead-ms)
    cache: str = "off"
    tried: list[str] = field(default_factory=list)
    # The final canonical answer (a stream's assembled one), when a hook of the call wants it.
    response: CanonicalResponse | None = None


@dataclass(slots=True)
class ShortCircuit:
    """A ready answer from a pre hook (a cache hit, for instance): a whole ``response``, or a
    stream's ``chunks`` (replayed as the caller's SSE); either serves both kinds of request."""

    response: CanonicalResponse | None = None
    chunks: Sequence[StreamChunk] | None = None
    cache: str = "hit"
    provider: str = "cache"  # x-fluxway-provider of the answer


class Hook(Protocol):
    """One stage of the pipeline. ``pre`` runs in pipeline order before routing; ``post`` once per
    call, in reverse order, after it. Optional attributes a hook may have:

    - ``before_send = True``: its ``post`` runs before the answer's last bytes are sent (the usage
      recorder: a record exists for every answer a client saw); the others run after;
    - ``wants_response = True``: ``outcome.response`` is filled for it (a stream is assembled);
    - ``applies(ctx) -> bool``: whether the hook takes part in a call (asked once per call, after
      auth); a hook that does not is skipped entirely, pre and post.
    """

    name: str

    async def pre(self, ctx: CallContext) -> ShortCircuit | None: ...

    async def post(self, ctx: CallContext, outcome: Outcome) -> None: ...


class StreamHook(Hook, Protocol):
    """A hook that also sees a stream's chunks, in pipeline order. ``chunk`` returns what goes on:
    ``[chunk]`` passes it, a new chunk rewrites it, ``[]`` drops or holds it back, several release
    held chunks; ``end`` returns what is still held when the upstream finishes."""

    async def chunk(self, ctx: CallContext, chunk: StreamChunk) -> Sequence[StreamChunk]: ...

    async def end(self, ctx: CallContext) -> Sequence[StreamChunk]: ...


__all__ = [
    "CallContext",
    "GatewayError",
    "Hook",
    "ModelFilter",
    "Outcome",
    "Principal",
    "ShortCircuit",
    "Slot",
    "StreamHook",
]
