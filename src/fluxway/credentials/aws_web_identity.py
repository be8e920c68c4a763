"""Web identity / IRSA: a token file exchanged for temporary keys with STS AssumeRoleWithWebIdentity.

Per the AWS STS API reference (AssumeRoleWithWebIdentity, API version 2011-06-15, Query protocol):
an unsigned ``POST https://sts.{region}.amazonaws.com/`` with the form body
``Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=...&RoleSessionName=...&WebIdentityToken=...``;
the XML answer holds ``AssumeRoleWithWebIdentityResult/Credentials/{AccessKeyId, SecretAccessKey,
SessionToken, Expiration}``. The token file is read again on every refresh (Kubernetes rotates it).
``AWS_ENDPOINT_URL_STS`` overrides the endpoint.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from fluxway.adapters.aws_sigv4 import AwsCredentials
from fluxway.canonical import ErrorKind, HttpCall, UpstreamError
from fluxway.credentials.aws_keys import expiry
from fluxway.credentials.http import Sender, fetch, form
from fluxway.credentials.refresh import Expiring

API_VERSION = "2011-06-15"


@dataclass(frozen=True, slots=True)
class WebIdentity:
    role_arn: str
    token_file: str
    session_name: str | None = None


def sts_endpoint(region: str | None, override: str | None = None) -> str:
    if override:
        return override.rstrip("/") + "/"
    return f"https://sts.{region}.amazonaws.com/" if region else "https://sts.amazonaws.com/"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_credentials_xml(body: bytes, what: str) -> Expiring[AwsCredentials]:
    """The ``Credentials`` element of an STS answer (namespaces ignored)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered invalid XML") from None
    node = next((el for el in root.iter() if _local(el.tag) == "Credentials"), None)
    fields = {_local(child.tag): (child.text or "").strip() for child in node} if node is not None else {}
    if not fields.get("AccessKeyId") or not fields.get("SecretAccessKey"):
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered no Credentials")
    creds = AwsCredentials(fields["AccessKeyId"], fields["SecretAccessKey"], fields.get("SessionToken") or None)
    return Expiring(creds, expiry(fields.get("Expiration"), what))


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


async def assume_role_with_web_identity(
    identity: WebIdentity, endpoint: str, http: Sender, clock: Callable[[], float] = time.time
) -> Expiring[AwsCredentials]:
    try:
        token = await asyncio.to_thread(_read_token, identity.token_file)
    except OSError as exc:
        raise UpstreamError(ErrorKind.AUTH, f"cannot read the web identity token file {identity.token_file!r}"
                                            f" ({exc.strerror})") from None
    body = form({
        "Action": "AssumeRoleWithWebIdentity",
        "Version": API_VERSION,
        "RoleArn": identity.role_arn,
        "RoleSessionName": identity.session_name or f"fluxway-{int(clock() * 1000)}",
        "WebIdentityToken": token,
    })
    call = HttpCall("POST", endpoint, {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, body)
    what = f"STS AssumeRoleWithWebIdentity ({endpoint})"
    reply = await fetch(http, call, what)
    return parse_credentials_xml(reply.body, what)
