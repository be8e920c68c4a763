"""AWS Signature Version 4 request signing, in pure Python (hmac + hashlib).

Follows the published algorithm (and botocore's ``SigV4Auth``, which the tests compare against):
canonical request -> string to sign -> HMAC chain ``AWS4<secret> / date / region / service /
aws4_request`` -> ``Authorization`` header. Paths are normalised (dot segments and repeated slashes
removed) and percent-encoded once more, as every service but S3 expects; the payload is hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers never signed (hop-by-hop or rewritten by proxies), as in botocore.
_UNSIGNED = frozenset(
    {
        "authorization",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def amz_date(timestamp: float) -> str:
    """``YYYYMMDDTHHMMSSZ`` for a POSIX timestamp."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    result = "/" + "/".join(out)
    if path.endswith("/") and result != "/":
        result += "/"
    return result


def canonical_uri(path: str) -> str:
    return quote(_remove_dot_segments(path or "/"), safe="/~")


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = [pair.partition("=")[::2] for pair in query.split("&")]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def host_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _trim(value: str) -> str:
    return " ".join(value.split())


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    creds: AwsCredentials,
    region: str,
    service: str,
    timestamp: float,
) -> dict[str, str]:
    """Return ``headers`` plus ``x-amz-date``, ``x-amz-security-token`` (if any) and ``authorization``.

    Header names in the result are lower case. ``host`` is signed (derived from the URL) but not
    added: the HTTP client sends the same value.
    """
    stamp = amz_date(timestamp)
    out = {k.lower(): v for k, v in headers.items() if k.lower() != "authorization"}
    out["x-amz-date"] = stamp
    if creds.session_token:
        out["x-amz-security-token"] = creds.session_token
    to_sign = {k: _trim(v) for k, v in out.items() if k not in _UNSIGNED}
    to_sign.setdefault("host", host_of(url))
    names = sorted(to_sign)
    signed_headers = ";".join(names)
    parts = urlsplit(url)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            "".join(f"{n}:{to_sign[n]}\n" for n in names),
            signed_headers,
            hashlib.sha256(body or b"").hexdigest(),
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = signing_key(creds.secret_access_key, stamp[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out
