"""Microsoft Entra ID client credentials (OAuth2 ``client_credentials`` grant, identity platform v2.0).

Per Microsoft's "OAuth 2.0 client credentials flow" reference: ``POST
{authority_host}/{tenant}/oauth2/v2.0/token`` form-encoded with ``grant_type=client_credentials``,
``client_id``, ``client_secret`` and ``scope`` (``https://cognitiveservices.azure.com/.default`` for
Azure OpenAI); the answer's ``access_token`` lives ``expires_in`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from fluxway.canonical import HttpCall
from fluxway.credentials.bearer import BearerSource
from fluxway.credentials.http import Sender, fetch_json, field, form, seconds
from fluxway.credentials.refresh import Expiring

if TYPE_CHECKING:
    from fluxway.adapters.settings import AzureSettings, EntraIdConfig


class ClientSecretFlow:
    __slots__ = ("_clock", "_http", "cfg", "url")

    def __init__(self, cfg: EntraIdConfig, http: Sender, clock: Callable[[], float] = time.time) -> None:
        assert cfg.tenant_id and cfg.client_id and cfg.client_secret
        self.cfg = cfg
        self.url = f"{cfg.authority_host.rstrip('/')}/{quote(cfg.tenant_id, safe='')}/oauth2/v2.0/token"
        self._http = http
        self._clock = clock

    async def fetch(self) -> Expiring[str]:
        cfg = self.cfg
        assert cfg.client_id and cfg.client_secret
        now = self._clock()
        body = form({"grant_type": "client_credentials", "client_id": cfg.client_id,
                     "client_secret": cfg.client_secret, "scope": cfg.scope})
        call = HttpCall("POST", self.url,
                        {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}, body)
        what = f"the Entra ID token endpoint ({self.url})"
        data = await fetch_json(self._http, call, what)
        return Expiring(field(data, "access_token", what), now + seconds(data.get("expires_in"), 3600))


def source_for(cfg: AzureSettings, http: Sender, clock: Callable[[], float] = time.time) -> BearerSource:
    assert cfg.entra_id is not None
    return BearerSource(ClientSecretFlow(cfg.entra_id, http, clock).fetch, clock=clock)
