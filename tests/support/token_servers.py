"""Local servers that speak each credential protocol, for the :mod:`fluxway.credentials` tests.

Each is a handler set for a :class:`~tests.support.upstream.FakeUpstream`; each checks its request
the way the real endpoint would (and refuses it otherwise), and counts the tokens it issued.

* :class:`GoogleTokenEndpoint` — Google's OAuth2 token endpoint for the JWT bearer grant (RFC 7523;
  Google Identity "Using OAuth 2.0 for Server to Server Applications"): verifies the assertion's
  RS256 signature with the service account's public key and its claims.
* :class:`StsEndpoint` — STS ``AssumeRoleWithWebIdentity`` (Query protocol, XML answer as in the STS
  API reference's example).
* :class:`Imds` — EC2 instance metadata, IMDSv2 only (PUT token, then GETs carrying it).
* :class:`ContainerEndpoint` — ECS / EKS Pod Identity container credentials (JSON).
* :class:`EntraEndpoint` — Microsoft identity platform v2.0 client-credentials token endpoint, and
  Azure IMDS / App Service managed-identity endpoints.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.replies import json_reply

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_account(token_uri: str, email: str = "fluxway-test@test-project.iam.gserviceaccount.com",
                    ) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """A fresh service-account key file (a new 2048-bit RSA key) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, key.public_key()


@dataclass
class GoogleTokenEndpoint:
    public_key: rsa.RSAPublicKey
    email: str
    audience: str  # the token_uri the JWT must name in aud
    expires_in: int = 3599
    issued: list[str] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/x-www-form-urlencoded":
            return json_reply({"error": "invalid_request"}, 400)
        form = await request.post()
        if form.get("grant_type") != JWT_GRANT:
            return json_reply({"error": "unsupported_grant_type"}, 400)
        head, body, sig = str(form.get("assertion", "")).split(".")
        try:
            self.public_key.verify(_unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return json_reply({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400)
        header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
        ok = (header.get("alg") == "RS256" and header.get("kid") and claims.get("iss") == self.email
              and claims.get("scope") == SCOPE and claims.get("aud") == self.audience
              and claims.get("exp") - claims.get("iat") == 3600)
        if not ok:
            return json_reply({"error": "invalid_grant", "error_description": f"bad claims {claims}"}, 400)
        self.claims.append(claims)
        token = f"ya29.test-token-{len(self.issued) + 1}"
        self.issued.append(token)
        return json_reply({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})


STS_XML = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:fluxway</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FluxwayRole/{session}</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


@dataclass
class AwsKeys:
    key: str = "ASIAIOSFODNN7EXAMPLE"
    secret: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    token: str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN=="
    lifetime_s: float = 3600.0

    def json(self) -> dict[str, Any]:
        return {"Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
                "AccessKeyId": self.key, "SecretAccessKey": self.secret, "Token": self.token,
                "Expiration": iso(time.time() + self.lifetime_s)}


@dataclass
class StsEndpoint:
    role_arn: str
    web_token: str
    keys: AwsKeys = field(default_factory=AwsKeys)
    calls: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if "authorization" in request.headers:  # the call is unsigned
            return web.Response(status=400, text="<Error><Code>InvalidRequest</Code></Error>")
        if (form.get("Action"), form.get("Version"), form.get("RoleArn")) != (
                "AssumeRoleWithWebIdentity", "2011-06-15", self.role_arn) or not form.get("RoleSessionName"):
            return web.Response(status=400, text="<ErrorResponse><Error><Code>ValidationError</Code></Error>"
                                                 "</ErrorResponse>")
        if form.get("WebIdentityToken") != self.web_token:
            return web.Response(status=400, text="<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error>"
                                                 "</ErrorResponse>")
        self.calls += 1
        k = self.keys
        body = STS_XML.format(session=form["RoleSessionName"], token=k.token, secret=k.secret, key=k.key,
                              expiration=iso(time.time() + k.lifetime_s))
        return web.Response(body=body.encode(), content_type="text/xml")


@dataclass
class Imds:
    role: str = "FluxwayInstanceRole"
    keys: AwsKeys = field(default_factory=AwsKeys)
    session: str = "AQAEAFluxwayIMDSv2SessionToken=="
    puts: int = 0
    refused: int = 0

    def install(self, up: Any) -> None:
        up.route("PUT", "/latest/api/token", self.token)
        up.route("GET", "/latest/meta-data/iam/security-credentials/", self.roles)
        up.route("GET", f"/latest/meta-data/iam/security-credentials/{self.role}", self.credentials)

    async def token(self, request: web.Request) -> web.StreamResponse:
        if not request.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "").isdigit():
            return web.Response(status=400)
        self.puts += 1
        return web.Response(text=self.session)

    def _unauthorized(self, request: web.Request) -> bool:
        bad = request.headers.get("x-aws-ec2-metadata-token") != self.session
        self.refused += bad
        return bad

    async def roles(self, request: web.Request) -> web.StreamResponse:
        if self._unauthorized(request):
            return web.Response(status=401)
        return web.Response(text=self.role)

    async def credentials(self, request: web.Request) -> web.StreamResponse:
        if self._unauthorized(request):
            return web.Response(status=401)
        return web.Response(text=json.dumps(self.keys.json()), content_type="text/plain")


@dataclass
class ContainerEndpoint:
    authorization: str | None = None
    keys: AwsKeys = field(default_factory=AwsKeys)
    calls: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.authorization is not None and request.headers.get("authorization") != self.authorization:
            return json_reply({"code": "AccessDenied", "message": "bad token"}, 403)
        self.calls += 1
        data = self.keys.json()
        data.pop("Code")
        return json_reply({**data, "RoleArn": "arn:aws:iam::123456789012:role/FluxwayTaskRole"})


@dataclass
class EntraEndpoint:
    tenant: str = "00000000-1111-2222-3333-444444444444"
    client_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    client_secret: str = "entra-test-secret"
    app_service_header: str = "app-service-identity-header"
    issued: list[str] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)

    def install(self, up: Any) -> None:
        up.route("POST", f"/{self.tenant}/oauth2/v2.0/token", self.client_credentials)
        up.route("GET", "/metadata/identity/oauth2/token", self.imds)
        up.route("GET", "/msi/token", self.app_service)

    def _issue(self) -> str:
        token = f"eyJ0eXAiOiJKV1Qi.entra-token-{len(self.issued) + 1}"
        self.issued.append(token)
        return token

    async def client_credentials(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("scope") != (
                "https://cognitiveservices.azure.com/.default"):
            return json_reply({"error": "invalid_request"}, 400)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return json_reply({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client"
                               " secret provided."}, 401)
        return json_reply({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                           "access_token": self._issue()})

    def _mi_answer(self) -> web.Response:
        now = int(time.time())
        return json_reply({"access_token": self._issue(), "client_id": self.client_id, "expires_in": "86399",
                           "expires_on": str(now + 86399), "ext_expires_in": "86399", "not_before": str(now),
                           "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer"})

    async def imds(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.headers.get("metadata") != "true":
            return json_reply({"error": "invalid_request", "error_description": "Required metadata header not"
                               " specified"}, 400)
        if request.query.get("api-version") != "2018-02-01" or not request.query.get("resource"):
            return json_reply({"error": "invalid_request"}, 400)
        return self._mi_answer()

    async def app_service(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.headers.get("x-identity-header") != self.app_service_header:
            return json_reply({"statusCode": 400, "message": "X-IDENTITY-HEADER is missing"}, 400)
        if request.query.get("api-version") != "2019-08-01":
            return json_reply({"error": "invalid_request"}, 400)
        return self._mi_answer()
