"""Azure managed identity tokens: the VM / container's IMDS endpoint, or App Service's.

Per Microsoft's "How to use managed identities for Azure resources on an Azure VM to acquire an
access token": ``GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01
&resource=<resource>[&client_id=<id>]`` with ``Metadata: true``. On App Service and Functions
("Managed identities for App Service"): ``GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...``
with ``X-IDENTITY-HEADER: $IDENTITY_HEADER``. Answers hold ``access_token`` and ``expires_on``
(POSIX seconds, as a string) and/or ``expires_in``. The resource is the scope without ``/.default``,
as azure-identity derives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fluxway.canonical import HttpCall
from fluxway.credentials.bearer import BearerSource
from fluxway.credentials.http import Sender, fetch_json, field, seconds
from fluxway.credentials.refresh import Expiring

if TYPE_CHECKING:
    from fluxway.adapters.settings import AzureSettings

IMDS_API_VERSION = "2018-02-01"
APP_SERVICE_API_VERSION = "2019-08-01"


def resource_of(scope: str) -> str:
    return scope.removesuffix("/.default")


class ManagedIdentityFlow:
    __slots__ = ("_clock", "_headers", "_http", "url")

    def __init__(self, cfg: AzureSettings, http: Sender, clock: Callable[[], float] = time.time) -> None:
        entra = cfg.entra_id
        assert entra is not None
        query = {"resource": resource_of(entra.scope)}
        if entra.client_id:
            query["client_id"] = entra.client_id
        app_service = cfg.app_service_identity
        if app_service is not None:
            endpoint, header = app_service
            self.url = f"{endpoint}?{urlencode({'api-version': APP_SERVICE_API_VERSION, **query})}"
            self._headers = {"x-identity-header": header, "accept": "application/json"}
        else:
            self.url = f"{entra.identity_endpoint}?{urlencode({'api-version': IMDS_API_VERSION, **query})}"
            self._headers = {"metadata": "true", "accept": "application/json"}
        self._http = http
        self._clock = clock

    async def fetch(self) -> Expiring[str]:
        now = self._clock()
        what = "the managed identity endpoint"
        data = await fetch_json(self._http, HttpCall("GET", self.url, dict(self._headers)), what)
        token = field(data, "access_token", what)
        expires_on = seconds(data.get("expires_on"), 0.0)
        if expires_on <= now:
            expires_on = now + seconds(data.get("expires_in"), 3600)
        return Expiring(token, expires_on)


def source_for(cfg: AzureSettings, http: Sender, clock: Callable[[], float] = time.time) -> BearerSource:
    return BearerSource(ManagedIdentityFlow(cfg, http, clock).fetch, clock=clock)
