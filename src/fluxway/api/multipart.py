"""``multipart/form-data`` (RFC 7578): a strict parser and an encoder, pure functions on bytes.

The upload endpoints (``/v1/files``, ``/v1/audio/transcriptions``) read the body within
``server.max_upload_bytes``, parse it here (a malformed body is a 400 naming what is wrong, never
a 500) and send the upstream a body re-encoded with the fields Fluxway rewrote (the target's
model) and the file parts byte for byte as they came.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from fluxway.errors import GatewayError

MAX_PARTS = 256  # fields and files in one form at most
_MAX_HEADER_BYTES = 8192  # one part's headers at most


def malformed(problem: str) -> GatewayError:
    return GatewayError(400, f"malformed multipart body: {problem}", code="invalid_multipart")


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None


@dataclass(frozen=True, slots=True)
class Form:
    parts: tuple[Part, ...]

    def field(self, name: str) -> str | None:
        """The first text field called ``name`` (a file part is not a field); 400 if not UTF-8."""
        for p in self.parts:
            if p.name == name and not p.is_file:
                try:
                    return p.data.decode("utf-8")
                except UnicodeDecodeError:
                    raise malformed(f"field '{name}' is not UTF-8 text") from None
        return None

    def file(self, name: str) -> Part | None:
        for p in self.parts:
            if p.name == name and p.is_file:
                return p
        return None

    def fields(self) -> dict[str, str]:
        """Every text field (the last of a repeated name wins); 400 for one that is not UTF-8."""
        out: dict[str, str] = {}
        for p in self.parts:
            if not p.is_file:
                try:
                    out[p.name] = p.data.decode("utf-8")
                except UnicodeDecodeError:
                    raise malformed(f"field '{p.name}' is not UTF-8 text") from None
        return out

    def replace_field(self, name: str, value: str) -> Form:
        return Form(tuple(Part(p.name, value.encode()) if p.name == name and not p.is_file else p
                          for p in self.parts))

    def replace_file(self, name: str, data: bytes) -> Form:
        return Form(tuple(Part(p.name, data, p.filename, p.content_type) if p.name == name and p.is_file else p
                          for p in self.parts))

    def without(self, names: Iterable[str]) -> Form:
        drop = frozenset(names)
        return Form(tuple(p for p in self.parts if p.is_file or p.name not in drop))


def _params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="a"; filename="b.wav"`` -> ("form-data", {"name": "a", "filename": "b.wav"})."""
    out: dict[str, str] = {}
    head, _, rest = value.partition(";")
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            if i >= n:
                raise malformed(f"unterminated quoted parameter '{key}' in a part's headers")
            i += 1
            out[key] = "".join(buf)
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            out[key] = rest[i:end].strip()
            i = end
    return head.strip().lower(), out


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 400 naming what is missing."""
    if not content_type:
        raise malformed("the request has no content-type (expected multipart/form-data)")
    kind, params = _params(content_type)
    if kind != "multipart/form-data":
        raise GatewayError(400, f"expected a multipart/form-data body, got content-type '{kind}'",
                           code="invalid_content_type")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise malformed("the content-type has no usable boundary parameter")
    return boundary.encode("latin-1", "replace")


def parse(body: bytes, content_type: str | None) -> Form:
    """Every part of a ``multipart/form-data`` body; 400 :func:`malformed` naming the problem."""
    boundary = boundary_of(content_type)
    delim = b"--" + boundary
    start = body.find(delim)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise malformed("the body does not start with the boundary given in the content-type")
    pos = start + len(delim)
    sep = b"\r\n" + delim
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):
            return Form(tuple(parts))
        if not body.startswith(b"\r\n", pos):
            raise malformed("a boundary line is not followed by a line break")
        pos += 2
        head_end = body.find(b"\r\n\r\n", pos, pos + _MAX_HEADER_BYTES + 4)
        if head_end < 0:
            if body.find(b"\r\n\r\n", pos) < 0 and body.find(sep, pos) < 0:
                raise malformed("the body ends inside a part's headers (no closing boundary)")
            raise malformed("a part's headers are missing or too long")
        headers = _part_headers(body[pos:head_end])
        pos = head_end + 4
        end = body.find(sep, pos)
        if end < 0:
            raise malformed("the body ends before its closing boundary")
        parts.append(_part(headers, body[pos:end], len(parts)))
        if len(parts) > MAX_PARTS:
            raise malformed(f"more than {MAX_PARTS} parts")
        pos = end + len(sep)


def _part_headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise malformed(f"a part header line has no ':' ({line[:60].decode('latin-1')!r})")
        try:
            text = value.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = value.decode("latin-1").strip()
        out[name.decode("latin-1").strip().lower()] = text
    return out


def _part(headers: dict[str, str], data: bytes, index: int) -> Part:
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise malformed(f"part {index} has no Content-Disposition header")
    kind, params = _params(disposition)
    if kind != "form-data":
        raise malformed(f"part {index} is '{kind}', not form-data")
    name = params.get("name")
    if not name:
        raise malformed(f"part {index} has no name")
    filename = params.get("filename*", params.get("filename"))
    if filename is not None and filename.lower().startswith("utf-8''"):
        from urllib.parse import unquote

        filename = unquote(filename[7:])
    return Part(name, data, filename, headers.get("content-type"))


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode(form: Form, boundary: str | None = None) -> tuple[bytes, str]:
    """The body and its content type."""
    b = boundary or "fluxway-" + os.urandom(12).hex()
    out = bytearray()
    for p in form.parts:
        out += f"--{b}\r\nContent-Disposition: form-data; name=\"{_quote(p.name)}\"".encode()
        if p.filename is not None:
            out += f"; filename=\"{_quote(p.filename)}\"".encode()
        out += b"\r\n"
        if p.content_type:
            out += f"Content-Type: {p.content_type}\r\n".encode("latin-1", "replace")
        out += b"\r\n" + p.data + b"\r\n"
    out += f"--{b}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={b}"
