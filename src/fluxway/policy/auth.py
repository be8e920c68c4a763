"""The principals every gateway knows without a store: the master key's and open mode's (the auth
hook itself is :class:`fluxway.policy.keys.VirtualKeyAuth`)."""

from __future__ import annotations

from fluxway.policy.hooks import Principal

# Open mode (no master key, no active key): inference is served, the admin API is not.
ANONYMOUS = Principal(id="anonymous", role="user")
OPEN_MODE_ADMIN = (
    "the admin API is closed while the gateway has no master key: set auth.master_key in the config "
    "(for instance master_key: ${FLUXWAY_MASTER_KEY}) and send it as 'Authorization: Bearer <key>'"
)
MASTER = Principal(id="master", role="admin", name="master key")
