"""RS256-signed JSON Web Tokens (RFC 7519 / RFC 7515 compact form), signed with ``cryptography``.

Used by the Google service-account flow (:mod:`.google`). ``cryptography`` is imported when a key
is loaded, not with this module.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_rsa_key(pem: str) -> RSAPrivateKey:
    """A PEM private key (PKCS#8 ``BEGIN PRIVATE KEY`` or PKCS#1 ``BEGIN RSA PRIVATE KEY``);
    ValueError if it is not an RSA key."""
    try:
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:  # pragma: no cover - the cloud extra is not installed
        raise ValueError("service-account credentials need the 'cryptography' package"
                         " (pip install 'fluxway[cloud]')") from None
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"private_key is not a PEM private key ({exc})") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("private_key is not an RSA key")
    return key


def rs256(claims: dict[str, Any], key: RSAPrivateKey, kid: str | None = None) -> str:
    """``header.claims.signature``: RSASSA-PKCS1-v1_5 with SHA-256 over the first two parts."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"
