"""Credentials without static keys: token flows that run at the gateway's edge, beside the transport.

A provider whose settings name a flow (:meth:`~fluxway.adapters.settings.ProviderSettings.credential_flow`)
gets a :class:`CredentialSource` here; the executor awaits it before each call and hands what it
returns (:class:`~fluxway.canonical.Credentials` with a ``bearer_token`` or AWS keys in ``extra``)
to the provider's pure adapter. Every flow caches through :class:`.refresh.Refresher` (refreshed
before expiry, one refresh at a time) and talks to its endpoints through the gateway's transport
(:mod:`.http`). One module per flow:

* :mod:`.google` — Google service account: an RS256 JWT (:mod:`.jwt`) exchanged at ``token_uri``
  (OAuth2 JWT bearer grant, RFC 7523), for Vertex AI.
* :mod:`.aws_chain` — the standard AWS chain for Bedrock: web identity / IRSA
  (:mod:`.aws_web_identity`), the shared profile files (:mod:`.aws_profile`), container credentials
  (:mod:`.aws_container`) and EC2 instance metadata, IMDSv2 (:mod:`.aws_imds`).
* :mod:`.azure_client_secret` and :mod:`.azure_managed_identity` — Microsoft Entra ID tokens for
  Azure OpenAI (client credentials; managed identity on IMDS or App Service).

Nothing here is imported unless a configured provider uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fluxway.adapters.settings import ProviderSettings
    from fluxway.canonical import Credentials
    from fluxway.credentials.http import Sender


class CredentialSource(Protocol):
    """What a flow gives the executor: the credentials for the next call (cached, refreshed)."""

    async def credentials(self) -> Credentials: ...


def create_source(cfg: ProviderSettings, http: Sender) -> CredentialSource | None:
    """The credential source of one configured provider, or None when its keys are static."""
    flow = cfg.credential_flow()
    if flow is None:
        return None
    module, _, factory = flow.partition(":")
    source: CredentialSource = getattr(importlib.import_module(module), factory)(cfg, http)
    return source
