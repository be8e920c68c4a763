"""Authentication in its simplest form: the master key (virtual keys extend this hook)."""

from __future__ import annotations

import hmac

from fluxway.errors import unauthorized
from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit

# Open mode (no master key, no active key): inference is served, the admin API is not.
ANONYMOUS = Principal(id="anonymous", role="user")
OPEN_MODE_ADMIN = (
    "the admin API is closed while the gateway has no master key: set auth.master_key in the config "
    "(for instance master_key: ${FLUXWAY_MASTER_KEY}) and send it as 'Authorization: Bearer <key>'"
)
MASTER = Principal(id="master", role="admin", name="master key")


class MasterKeyAuth:
    """With a master key set, every call needs it; without one, calls are anonymous."""

    name = "auth"

    def __init__(self, master_key: str | None) -> None:
        self._key = master_key.encode() if master_key else None

    def authenticate(self, api_key: str | None) -> Principal:
        if self._key is None:
            return ANONYMOUS
        if api_key is None:
            raise unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        if hmac.compare_digest(api_key.encode(), self._key):
            return MASTER
        raise unauthorized("invalid API key")

    async def resolve(self, api_key: str | None) -> Principal:
        return self.authenticate(api_key)

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        if ctx.principal is None:  # the pipeline resolves it up front; other callers may not
            ctx.principal = self.authenticate(ctx.api_key)
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None
