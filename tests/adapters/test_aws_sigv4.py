"""SigV4 signing: AWS's published test-suite vectors and botocore's SigV4Auth as references."""

from __future__ import annotations

import calendar
import datetime
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from fluxway.adapters import aws_sigv4
from fluxway.adapters.aws_sigv4 import AwsCredentials, amz_date, canonical_query, canonical_uri, sign

# The AWS SigV4 test suite (aws-sig-v4-test-suite) uses these credentials, scope and time.
SUITE_CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = calendar.timegm((2015, 8, 30, 12, 36, 0, 0, 0, 0))


def test_amz_date_is_utc_basic_format() -> None:
    assert amz_date(SUITE_TIME) == "20150830T123600Z"


def test_suite_get_vanilla() -> None:
    headers = sign("GET", "https://example.amazonaws.com/", {}, b"", SUITE_CREDS, "us-east-1", "service", SUITE_TIME)
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert headers["x-amz-date"] == "20150830T123600Z"


def test_suite_post_vanilla() -> None:
    headers = sign("POST", "https://example.amazonaws.com/", {}, b"", SUITE_CREDS, "us-east-1", "service", SUITE_TIME)
    assert headers["authorization"].endswith(
        "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    )


def test_canonical_uri_normalises_and_encodes_again() -> None:
    assert canonical_uri("/model/amazon.titan-embed-text-v2%3A0/invoke") == (
        "/model/amazon.titan-embed-text-v2%253A0/invoke"
    )
    assert canonical_uri("/a/./b/../c//d") == "/a/c/d"
    assert canonical_uri("") == "/"


def test_canonical_query_is_sorted() -> None:
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("") == ""


def _botocore_signature(
    method: str, url: str, headers: dict[str, str], body: bytes, creds: AwsCredentials, region: str, ts: float,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    fixed = datetime.datetime.fromtimestamp(ts, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: fixed)
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    SigV4Auth(BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token), "bedrock",
              region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    ("url", "session_token"),
    [
        ("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
         None),
        ("https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
         "arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile%2Feu.meta.llama3/converse-stream",
         "FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDA=="),
        ("http://127.0.0.1:8123/model/amazon.titan-embed-text-v2%3A0/invoke?b=x%20y&a=1", None),
    ],
)
def test_matches_botocore(url: str, session_token: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = AwsCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", session_token)
    region = url.split(".")[1] if "amazonaws" in url else "us-west-2"
    body = b'{"messages":[{"role":"user","content":[{"text":"Hello   there"}]}]}'
    headers = {"Content-Type": "application/json", "Accept": "application/json", "X-Custom": "  a   b  "}
    ts = time.time()
    ours = sign("POST", url, headers, body, creds, region, "bedrock", ts)
    theirs = _botocore_signature("POST", url, headers, body, creds, region, ts, monkeypatch)
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    if session_token:
        assert ours["x-amz-security-token"] == session_token == theirs["x-amz-security-token"]
    else:
        assert "x-amz-security-token" not in ours


def test_signature_changes_with_body_and_key() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
    a = sign("POST", url, {}, b"{}", SUITE_CREDS, "us-east-1", "bedrock", SUITE_TIME)["authorization"]
    b = sign("POST", url, {}, b"{ }", SUITE_CREDS, "us-east-1", "bedrock", SUITE_TIME)["authorization"]
    other = AwsCredentials("AKIDEXAMPLE", "other-secret")
    c = sign("POST", url, {}, b"{}", other, "us-east-1", "bedrock", SUITE_TIME)["authorization"]
    assert len({a, b, c}) == 3


def test_existing_authorization_header_is_replaced() -> None:
    headers = sign("GET", "https://example.amazonaws.com/", {"Authorization": "Bearer old"}, b"", SUITE_CREDS,
                   "us-east-1", "service", SUITE_TIME)
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "Authorization" not in headers


def test_host_with_port_and_ipv6() -> None:
    assert aws_sigv4.host_of("https://example.com:443/x") == "example.com"
    assert aws_sigv4.host_of("http://127.0.0.1:8080/x") == "127.0.0.1:8080"
    assert aws_sigv4.host_of("http://[::1]:9000/x") == "[::1]:9000"
