"""The principals every gateway knows without a store (the master key's and open mode's), and the
one admin check (the auth hook itself is :class:`fluxway.policy.keys.VirtualKeyAuth`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fluxway.errors import forbidden
from fluxway.ingress.base import bearer_token
from fluxway.policy.hooks import Principal

# Open mode (no master key, no active key): inference is served, the admin API is not.
ANONYMOUS = Principal(id="anonymous", role="user")
OPEN_MODE_ADMIN = (
    "the admin API is closed while the gateway has no master key: set auth.master_key in the config "
    "(for instance master_key: ${FLUXWAY_MASTER_KEY}) and send it as 'Authorization: Bearer <key>'"
)
MASTER = Principal(id="master", role="admin", name="master key")


async def admin_principal(
    resolve: Callable[[str | None], Awaitable[Principal]], headers: Mapping[str, str]
) -> Principal:
    """The caller of an admin route (the admin API and the gateway's own ``/admin/...`` routes):
    its key from ``Authorization: Bearer`` or ``x-api-key``, which must be the master key or an
    admin key. Raises the 401 of an unknown key, or a 403 (saying how to set a master key in
    open mode)."""
    principal = await resolve(bearer_token(headers) or headers.get("x-api-key"))
    if principal is ANONYMOUS:
        raise forbidden(OPEN_MODE_ADMIN)
    if not principal.is_admin:
        raise forbidden("this route needs the master key or an admin key")
    return principal
