"""A :class:`~fluxway.credentials.CredentialSource` of OAuth2 access tokens: what the Google and
Microsoft flows share once they know how to fetch one token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fluxway.canonical import Credentials
from fluxway.credentials.refresh import EARLY_S, Expiring, Refresher


class BearerSource:
    """Access tokens from ``fetch``, cached and refreshed ahead of expiry."""

    __slots__ = ("_tokens",)

    def __init__(self, fetch: Callable[[], Awaitable[Expiring[str]]], *, clock: Callable[[], float] = time.time,
                 early_s: float = EARLY_S) -> None:
        self._tokens = Refresher(fetch, clock=clock, early_s=early_s)

    async def credentials(self) -> Credentials:
        return Credentials(None, {"bearer_token": await self._tokens.get()})
