"""EC2 instance metadata, IMDSv2: a session token first, then the instance role's keys.

Per the EC2 user guide ("Use the Instance Metadata Service to access instance metadata" and "IAM
roles for EC2"): ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``; then with
``X-aws-ec2-metadata-token``: ``GET /latest/meta-data/iam/security-credentials/`` (the role name)
and ``GET /latest/meta-data/iam/security-credentials/{role}`` (``{"Code": "Success", "AccessKeyId",
"SecretAccessKey", "Token", "Expiration"}``). The endpoint is ``http://169.254.169.254``, or
``AWS_EC2_METADATA_SERVICE_ENDPOINT``. No IMDSv1 fallback: a host that refuses the token PUT fails.
"""

from __future__ import annotations

from fluxway.adapters.aws_sigv4 import AwsCredentials
from fluxway.canonical import ErrorKind, HttpCall, UpstreamError
from fluxway.credentials.aws_keys import from_json
from fluxway.credentials.http import Sender, fetch, fetch_json
from fluxway.credentials.refresh import Expiring
from fluxway.transport import Timeouts

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_S = 21600
ROLE_PATH = "/latest/meta-data/iam/security-credentials/"
# botocore's default: one second; a host with no metadata service must not stall calls.
IMDS_TIMEOUTS = Timeouts(connect=1.0, first_token=2.0, total=3.0)


async def instance_credentials(endpoint: str, http: Sender) -> Expiring[AwsCredentials]:
    base = endpoint.rstrip("/")
    what = f"the EC2 instance metadata service ({base})"
    token_call = HttpCall("PUT", base + "/latest/api/token", {"x-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
    token = (await fetch(http, token_call, what, IMDS_TIMEOUTS)).body.decode().strip()
    headers = {"x-aws-ec2-metadata-token": token}
    roles = (await fetch(http, HttpCall("GET", base + ROLE_PATH, dict(headers)), what, IMDS_TIMEOUTS)).body
    role = roles.decode().strip().splitlines()[0].strip() if roles.strip() else ""
    if not role:
        raise UpstreamError(ErrorKind.AUTH, f"{what}: the instance has no IAM role")
    data = await fetch_json(http, HttpCall("GET", base + ROLE_PATH + role, headers), what, IMDS_TIMEOUTS)
    if data.get("Code", "Success") != "Success":
        raise UpstreamError(ErrorKind.AUTH, f"{what}: role {role!r} answered Code {data.get('Code')!r}")
    return from_json(data, what)
