"""Container credentials (ECS task roles, EKS Pod Identity): a local endpoint that serves keys as JSON.

As botocore's ``ContainerProvider``: ``GET http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``
or ``GET $AWS_CONTAINER_CREDENTIALS_FULL_URI``, with ``Authorization`` from
``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (or the file ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``, read
on every refresh); the answer is ``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fluxway.adapters.aws_sigv4 import AwsCredentials
from fluxway.canonical import ErrorKind, HttpCall, UpstreamError
from fluxway.credentials.aws_keys import from_json
from fluxway.credentials.http import Sender, fetch_json
from fluxway.credentials.refresh import Expiring

ECS_HOST = "http://169.254.170.2"


def container_url(env: Mapping[str, str]) -> str | None:
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return ECS_HOST + env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    return env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


async def container_credentials(url: str, env: Mapping[str, str], http: Sender) -> Expiring[AwsCredentials]:
    headers = {"accept": "application/json"}
    token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
        path = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
        try:
            token = await asyncio.to_thread(_read, path)
        except OSError as exc:
            raise UpstreamError(ErrorKind.AUTH, f"cannot read {path!r} ({exc.strerror})") from None
    if token:
        headers["authorization"] = token
    what = f"the container credentials endpoint ({url})"
    return from_json(await fetch_json(http, HttpCall("GET", url, headers), what), what)
