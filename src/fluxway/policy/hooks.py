"""The hook seam: plug-ins that run around the executor without touching adapters.

A hook's ``pre`` may stop the call by raising :class:`GatewayError` (auth, limits) or by
returning a :class:`ShortCircuit` holding a ready answer (cache). ``post`` sees every outcome,
success or failure, exactly once; it must be cheap (enqueue, don't write).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Protocol

from fluxway.canonical import CanonicalRequest, CanonicalResponse, Target, Usage
from fluxway.errors import GatewayError

ModelFilter = Callable[[str], bool]


@dataclass(slots=True)
class Principal:
    """Who is calling: resolved by the auth hook."""

    id: str  # key id ("master" for the master key, "anonymous" when auth is off)
    role: str = "user"  # "admin" | "user"
    team: str | None = None
    name: str | None = None
    models: tuple[str, ...] | None = None  # allowed model globs; None: all
    metadata: dict[str, Any] = field(default_factory=dict)

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


@dataclass(slots=True)
class CallContext:
    request_id: str
    ingress: str  # "openai" | "anthropic"
    headers: Mapping[str, str]  # request headers, lower-case names
    api_key: str | None
    request: CanonicalRequest
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    # Extra response headers hooks want sent (x-ratelimit-*, ...).
    response_headers: dict[str, str] = field(default_factory=dict)
    # Per-call scratch space for hooks (reservation ids, cache keys, ...), keyed by hook name.
    state: dict[str, Any] = field(default_factory=dict)


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
    cache: str = "off"
    tried: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ShortCircuit:
    """A ready answer from a pre hook (a cache hit, for instance)."""

    response: CanonicalResponse
    cache: str = "hit"


class Hook(Protocol):
    """``pre`` runs in list order before routing; ``post`` once per call after it. A hook with a
    true ``before_send`` attribute has its ``post`` run before the answer's last bytes are sent
    (the usage recorder: a record exists for every answer a client saw); the others run after."""

    name: str

    async def pre(self, ctx: CallContext) -> ShortCircuit | None: ...

    async def post(self, ctx: CallContext, outcome: Outcome) -> None: ...


__all__ = ["CallContext", "GatewayError", "Hook", "ModelFilter", "Outcome", "Principal", "ShortCircuit"]
