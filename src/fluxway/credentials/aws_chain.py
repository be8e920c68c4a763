"""The standard AWS credential chain, for a Bedrock provider with no static keys and no API key.

In botocore's order (the environment keys were already taken by the config loader, which also
captured the variables read here):

1. web identity from the environment: ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``
   (IRSA on EKS), :mod:`.aws_web_identity`;
2. the shared profile (``aws_profile``, else ``AWS_PROFILE``, else ``default``): its web identity,
   or its static keys, :mod:`.aws_profile`;
3. container credentials (``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` / ``FULL_URI``), :mod:`.aws_container`;
4. EC2 instance metadata, IMDSv2 (unless ``AWS_EC2_METADATA_DISABLED=true``), :mod:`.aws_imds`.

The first that applies is used; which one is decided again at every refresh (before expiry).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fluxway.adapters.aws_sigv4 import AwsCredentials
from fluxway.canonical import Credentials, ErrorKind, UpstreamError
from fluxway.credentials.aws_container import container_credentials, container_url
from fluxway.credentials.aws_imds import DEFAULT_ENDPOINT, instance_credentials
from fluxway.credentials.aws_keys import REREAD_S
from fluxway.credentials.aws_profile import load_profile, profile_name
from fluxway.credentials.aws_web_identity import WebIdentity, assume_role_with_web_identity, sts_endpoint
from fluxway.credentials.http import Sender
from fluxway.credentials.refresh import Expiring, Refresher

if TYPE_CHECKING:
    from fluxway.adapters.settings import BedrockSettings


class AwsChain:
    """Finds and refreshes one Bedrock provider's AWS keys."""

    __slots__ = ("_clock", "_http", "_keys", "cfg", "env", "source")

    def __init__(self, cfg: BedrockSettings, http: Sender, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.env = dict(cfg.chain_env)
        self._http = http
        self._clock = clock
        self._keys: Refresher[AwsCredentials] = Refresher(self.fetch, clock=clock)
        self.source = ""  # which step of the chain served the last keys

    async def credentials(self) -> Credentials:
        k = await self._keys.get()
        extra = {"aws_access_key_id": k.access_key_id, "aws_secret_access_key": k.secret_access_key}
        if k.session_token:
            extra["aws_session_token"] = k.session_token
        return Credentials(None, extra)

    def _sts(self) -> str:
        return sts_endpoint(self.cfg.region, self.env.get("AWS_ENDPOINT_URL_STS"))

    async def fetch(self) -> Expiring[AwsCredentials]:
        env = self.env
        if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
            self.source = "web-identity"
            identity = WebIdentity(env["AWS_ROLE_ARN"], env["AWS_WEB_IDENTITY_TOKEN_FILE"],
                                   env.get("AWS_ROLE_SESSION_NAME"))
            return await assume_role_with_web_identity(identity, self._sts(), self._http, self._clock)
        name, explicit = profile_name(self.cfg.aws_profile, env)
        profile = await asyncio.to_thread(load_profile, name, env)
        if profile is not None:
            if profile.role_arn and profile.web_identity_token_file:
                self.source = f"profile {name} (web identity)"
                identity = WebIdentity(profile.role_arn, profile.web_identity_token_file, profile.role_session_name)
                return await assume_role_with_web_identity(identity, self._sts(), self._http, self._clock)
            if profile.keys is not None:
                self.source = f"profile {name}"
                return Expiring(profile.keys, self._clock() + REREAD_S)
            if explicit:
                raise UpstreamError(ErrorKind.AUTH, f"AWS profile '{name}' has neither keys nor a web identity"
                                                    " (role_arn with source_profile is not supported)")
        elif explicit:
            raise UpstreamError(ErrorKind.AUTH, f"AWS profile '{name}' is in neither ~/.aws/credentials nor"
                                                " ~/.aws/config")
        url = container_url(env)
        if url:
            self.source = "container"
            return await container_credentials(url, env, self._http)
        if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
            raise UpstreamError(ErrorKind.AUTH, "no AWS credentials: no keys, profile, web identity or container"
                                                " credentials, and instance metadata is disabled")
        self.source = "instance metadata"
        return await instance_credentials(env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT,
                                          self._http)


def source_for(cfg: BedrockSettings, http: Sender, clock: Callable[[], float] = time.time) -> AwsChain:
    return AwsChain(cfg, http, clock)
