"""Admission: how many calls may be in flight, in the process and per key.

A slot is taken only once the caller is known and allowed (after the auth, limit and budget
hooks), so a key sending slow bodies or refused calls holds no slot that other tenants need.
Counting is plain integers on the event loop: no lock, no await.
"""

from __future__ import annotations

from fluxway.errors import GatewayError, overloaded
from fluxway.policy.hooks import Principal

_UNLIMITED_IDS = frozenset({"master", "anonymous"})  # the master key and auth-off callers


def concurrency_limited(limit: int, what: str = "calls in flight") -> GatewayError:
    return GatewayError(
        429,
        f"this API key already has {limit} {what} (its concurrency limit); retry when one ends",
        type="rate_limit_error",
        code="concurrency_limit_exceeded",
        headers={"retry-after": "1"},
    )


class Admission:
    """``enter`` before routing (raises 503 overloaded or 429 per-key), ``leave`` when the call ends."""

    __slots__ = ("_max", "_per_key", "_per_key_default", "_reading", "in_flight")

    def __init__(self, max_in_flight: int, per_key_default: int) -> None:
        self.in_flight = 0
        self._max = max_in_flight
        self._per_key_default = per_key_default
        self._per_key: dict[str, int] = {}  # key id -> calls in flight (entries removed at zero)
        self._reading: dict[str, int] = {}  # key id -> requests whose body is still arriving

    def key_limit(self, principal: Principal) -> int:
        """The key's concurrency limit (0: none): its ``metadata.max_concurrency``, else the default."""
        own = principal.max_concurrency
        if own is not None and own > 0:
            return own
        if principal.id in _UNLIMITED_IDS:
            return 0
        return self._per_key_default

    def enter(self, principal: Principal | None) -> str | None:
        """Take a slot; returns the key id holding a per-key slot (pass it to ``leave``)."""
        if self._max and self.in_flight >= self._max:
            raise overloaded()
        held: str | None = None
        if principal is not None:
            limit = self.key_limit(principal)
            if limit:
                n = self._per_key.get(principal.id, 0)
                if n >= limit:
                    raise concurrency_limited(limit)
                self._per_key[principal.id] = n + 1
                held = principal.id
        self.in_flight += 1
        return held

    def begin_read(self, principal: Principal) -> str | None:
        """Before a body is read: a key with a concurrency limit may have at most that many bodies
        arriving at once (slow uploads hold connections, not slots); beyond, 429 and close."""
        limit = self.key_limit(principal)
        if not limit:
            return None
        n = self._reading.get(principal.id, 0)
        if n >= limit:
            err = concurrency_limited(limit, "request bodies arriving")
            err.headers["connection"] = "close"  # the body is not read: don't keep the connection
            raise err
        self._reading[principal.id] = n + 1
        return principal.id

    def end_read(self, held: str | None) -> None:
        if held is None:
            return
        n = self._reading.get(held, 1) - 1
        if n > 0:
            self._reading[held] = n
        else:
            self._reading.pop(held, None)

    def leave(self, held: str | None) -> None:
        self.in_flight -= 1
        if held is not None:
            n = self._per_key.get(held, 1) - 1
            if n > 0:
                self._per_key[held] = n
            else:
                self._per_key.pop(held, None)

    def of_key(self, key_id: str) -> int:
        return self._per_key.get(key_id, 0)
