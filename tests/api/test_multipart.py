"""The multipart parser: what well-formed bodies hold, and that any other body is a 400, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxway.api.multipart import Form, Part, encode, parse
from fluxway.errors import GatewayError

CT = "multipart/form-data; boundary=b0und"


def test_a_form_from_an_sdk_style_body() -> None:
    body = (b"--b0und\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b0un in the data\r\n--b0und--\r\n")
    form = parse(body, CT)
    assert form.field("model") == "whisper-1"
    f = form.file("file")
    assert f is not None and (f.filename, f.content_type, f.data) == ("a b.wav", "audio/wav",
                                                                      b"RIFF\r\n--b0un in the data")
    assert form.fields() == {"model": "whisper-1"}
    assert form.field("file") is None and form.file("model") is None


def test_quoted_and_rfc5987_names() -> None:
    body = (b"--b0und\r\nContent-Disposition: form-data; name=\"a\\\"q\"; filename*=utf-8''na%C3%AFve.txt\r\n\r\n"
            b"x\r\n--b0und--")
    part = parse(body, CT).parts[0]
    assert (part.name, part.filename) == ('a"q', "naïve.txt")


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "does not start with the boundary"),
    (b"--b0und\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx", "ends before its closing boundary"),
    (b"--b0und\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0und--", "has no name"),
    (b"--b0und\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b0und--", "not form-data"),
    (b"--b0und\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b0und--", "unterminated"),
    (b"--b0undX", "not followed by a line break"),
    (b"--b0und\r\nContent-Disposition: form-data; name=a\r\n\r\n\xff\r\n--b0und--", "not UTF-8"),
])
def test_malformed_bodies_name_their_problem(body: bytes, problem: str) -> None:
    with pytest.raises(GatewayError) as err:
        parse(body, CT).fields()
    assert err.value.status == 400 and problem in err.value.message


@pytest.mark.parametrize("ct", [None, "text/plain", "multipart/form-data", "multipart/form-data; boundary="])
def test_a_content_type_without_a_boundary_is_a_400(ct: str | None) -> None:
    with pytest.raises(GatewayError) as err:
        parse(b"--x\r\n", ct)
    assert err.value.status == 400


_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_parts = st.lists(st.builds(Part, _names, st.binary(max_size=64), st.one_of(st.none(), _names),
                            st.one_of(st.none(), st.sampled_from(["audio/wav", "text/plain"]))), max_size=6)


@settings(max_examples=200, deadline=None)
@given(_parts)
def test_encode_then_parse_keeps_every_part(parts: list[Part]) -> None:
    body, ct = encode(Form(tuple(parts)))
    got = parse(body, ct).parts
    assert [(p.data, p.content_type, p.filename is None) for p in got] == [
        (p.data, p.content_type, p.filename is None) for p in parts]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"--b0und\r\n", b"--b0und\r\nContent-Disposition: form-data; "]))
def test_any_body_parses_or_is_a_400(junk: bytes, prefix: bytes) -> None:
    try:
        parse(prefix + junk, CT).fields()
    except GatewayError as err:
        assert err.status == 400
