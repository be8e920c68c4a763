"""Model and deployment names that become part of an upstream URL path.

A client may name any model directly (``"<provider>/<model>"``), so the part after the provider
reaches the adapter as it was typed. An adapter that puts a name into a URL path must check it here
first and percent-encode every segment: ``gemini/x?key=evil#`` or ``gemini/a/../../v1/models/b``
must never become a different upstream URL (with the provider key attached), and a key's model
allowlist, which matched the name as typed, must describe the URL actually called.

Refused everywhere: ``..`` (and ``.``) segments, ``?``, ``#``, ``%`` (no pre-encoded names, so
encoding is never ambiguous), backslashes, whitespace and control characters, empty segments, and
names over :data:`MAX_NAME_CHARS`. A ``/`` is refused unless the provider's names have segments;
then each segment is checked and encoded on its own.
"""

from __future__ import annotations

from urllib.parse import quote

from fluxway.errors import GatewayError

MAX_NAME_CHARS = 256
_BAD_CHARS = frozenset("?#%\\")


def invalid_model(name: str, why: str) -> GatewayError:
    shown = name[:80].encode("unicode_escape").decode("ascii")
    return GatewayError(400, f"invalid model name '{shown}': {why}", param="model", code="invalid_model")


def check_segment(segment: str, name: str) -> None:
    if segment in ("", ".", ".."):
        raise invalid_model(name, "empty, '.' or '..' path segments are not allowed")
    for ch in segment:
        if ch in _BAD_CHARS:
            raise invalid_model(name, f"the character {ch!r} is not allowed")
        if ch.isspace() or not ch.isprintable():
            raise invalid_model(name, "whitespace and control characters are not allowed")


def check_name(name: str, *, allow_slash: bool = False) -> list[str]:
    """The name's path segments, each checked; raises a 400 ``invalid_model`` (param ``model``)."""
    if not name:
        raise invalid_model(name, "the name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise invalid_model(name, f"longer than {MAX_NAME_CHARS} characters")
    segments = name.split("/") if allow_slash else [name]
    if not allow_slash and "/" in name:
        raise invalid_model(name, "this provider's model names cannot contain '/'")
    for seg in segments:
        check_segment(seg, name)
    return segments


def path_segment(name: str) -> str:
    """One checked, percent-encoded path segment (``/`` refused)."""
    check_name(name)
    return quote(name, safe="")


def opaque_segment(name: str) -> str:
    """A checked name put into ONE path segment, ``/`` and ``:`` included encoded (``%2F``, ``%3A``).

    This is how the AWS SDKs send a non-greedy URI label such as Bedrock's ``{modelId}``: an
    inference-profile ARN ``arn:aws:bedrock:us-east-1:123:inference-profile/us.x`` goes as
    ``arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x``.
    """
    check_name(name, allow_slash=True)
    return quote(name, safe="")


def segments_path(name: str) -> str:
    """A checked multi-segment resource name (``models/x``, ``projects/p/.../models/m``), each
    segment percent-encoded, the ``/`` between them kept."""
    return "/".join(quote(seg, safe="") for seg in check_name(name, allow_slash=True))
