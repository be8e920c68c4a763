"""Google service-account credentials: the OAuth2 JWT bearer flow (RFC 7523), as google-auth does it.

Per Google's "Using OAuth 2.0 for Server to Server Applications" and google-auth's
``google/oauth2/service_account.py`` / ``_client.py``: sign an RS256 JWT whose claims are ``iss``
(the account's ``client_email``), ``scope`` (``cloud-platform``), ``aud`` (the account's
``token_uri``), ``iat`` and ``exp`` (``iat`` + 3600), with ``kid`` the ``private_key_id``; POST it
form-encoded as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`` to
``token_uri``; the answer's ``access_token`` lives ``expires_in`` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from fluxway.canonical import HttpCall
from fluxway.credentials.bearer import BearerSource
from fluxway.credentials.http import Sender, fetch_json, field, form, seconds
from fluxway.credentials.jwt import load_rsa_key, rs256
from fluxway.credentials.refresh import Expiring

if TYPE_CHECKING:
    from fluxway.adapters.settings import VertexSettings

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
LIFETIME_S = 3600  # google-auth's _DEFAULT_TOKEN_LIFETIME_SECS


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a service-account key file that the flow uses."""

    client_email: str
    private_key: str
    token_uri: str
    private_key_id: str | None = None
    project_id: str | None = None

    @classmethod
    def parse(cls, value: str) -> ServiceAccount:
        """A key file's JSON (inline, starting with ``{``) or a path to it; ValueError says what is wrong."""
        text = value.strip()
        if not text.startswith("{"):
            path = os.path.expanduser(text)
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ValueError(f"cannot read the service-account file {value!r} ({exc.strerror})") from None
        try:
            data: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("the service-account key is not valid JSON") from None
        if not isinstance(data, dict):
            raise ValueError("the service-account key is not a JSON object")
        if data.get("type", "service_account") != "service_account":
            raise ValueError(f"credentials of type '{data.get('type')}' are not supported (only 'service_account')")
        missing = [k for k in ("client_email", "private_key") if not isinstance(data.get(k), str) or not data[k]]
        if missing:
            raise ValueError(f"the service-account key has no {' or '.join(missing)}")
        load_rsa_key(data["private_key"])
        return cls(
            data["client_email"],
            data["private_key"],
            str(data.get("token_uri") or DEFAULT_TOKEN_URI),
            data.get("private_key_id") if isinstance(data.get("private_key_id"), str) else None,
            data.get("project_id") if isinstance(data.get("project_id"), str) else None,
        )


class ServiceAccountFlow:
    """Access tokens for one service account."""

    __slots__ = ("_clock", "_http", "_key", "account", "scope", "token_uri")

    def __init__(self, account: ServiceAccount, http: Sender, *, scope: str = SCOPE,
                 token_uri: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self.scope = scope
        self.token_uri = token_uri or account.token_uri
        self._http = http
        self._clock = clock
        self._key = load_rsa_key(account.private_key)

    def assertion(self, now: float) -> str:
        iat = int(now)
        claims = {"iss": self.account.client_email, "scope": self.scope, "aud": self.token_uri,
                  "iat": iat, "exp": iat + LIFETIME_S}
        return rs256(claims, self._key, self.account.private_key_id)

    async def fetch(self) -> Expiring[str]:
        now = self._clock()
        body = form({"grant_type": GRANT_TYPE, "assertion": self.assertion(now)})
        call = HttpCall("POST", self.token_uri,
                        {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}, body)
        what = f"the Google token endpoint ({self.token_uri})"
        data = await fetch_json(self._http, call, what)
        return Expiring(field(data, "access_token", what), now + seconds(data.get("expires_in"), LIFETIME_S))


def source_for(cfg: VertexSettings, http: Sender, clock: Callable[[], float] = time.time) -> BearerSource:
    """The Vertex provider's token source (its settings checked that ``credentials`` parses)."""
    assert cfg.credentials is not None
    flow = ServiceAccountFlow(ServiceAccount.parse(cfg.credentials), http, token_uri=cfg.token_uri, clock=clock)
    return BearerSource(flow.fetch, clock=clock)
