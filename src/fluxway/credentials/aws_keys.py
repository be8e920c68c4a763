"""What the AWS credential flows share: the keys they produce and how AWS writes expiry times."""

from __future__ import annotations

import datetime
from typing import Any

from fluxway.adapters.aws_sigv4 import AwsCredentials
from fluxway.canonical import ErrorKind, UpstreamError
from fluxway.credentials.refresh import Expiring

# Keys with no expiry (a profile's) are read again this often, so that an edited file takes effect.
REREAD_S = 3600.0


def expiry(value: Any, what: str) -> float:
    """An ISO 8601 ``Expiration`` (``2019-11-22T10:18:35Z``) as POSIX seconds."""
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered an unreadable Expiration {value!r:.60}") from None


def from_json(data: dict[str, Any], what: str) -> Expiring[AwsCredentials]:
    """``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`` (container and instance metadata)."""
    key, secret = data.get("AccessKeyId"), data.get("SecretAccessKey")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered no AccessKeyId / SecretAccessKey")
    token = data.get("Token")
    creds = AwsCredentials(key, secret, token if isinstance(token, str) and token else None)
    return Expiring(creds, expiry(data.get("Expiration"), what))
