"""Analytics tags from ``x-fluxway-tags: a,b`` (SPEC §3): parsed once per call, kept on its record.

At most :data:`MAX_TAGS` distinct tags of 1 to :data:`MAX_TAG_LENGTH` characters from
``[A-Za-z0-9._:=/-]``; anything else is a 400 naming the header (a client never grows the rollups
with arbitrary text).
"""

from __future__ import annotations

import re

from fluxway.errors import GatewayError, bad_request
from fluxway.policy.hooks import Slot

HEADER = "x-fluxway-tags"
MAX_TAGS = 10
MAX_TAG_LENGTH = 48
TAGS: Slot[str] = Slot("tags")  # the call's tags, comma-joined as stored
_TAG_RE = re.compile(rf"[A-Za-z0-9._:=/-]{{1,{MAX_TAG_LENGTH}}}")


def parse_tags(value: str | None) -> str | None:
    """The tags of a header value, comma-joined in first-seen order (None when there are none)."""
    if value is None:
        return None
    tags: list[str] = []
    for part in value.split(","):
        tag = part.strip()
        if not tag:
            continue
        if not _TAG_RE.fullmatch(tag):
            raise _bad(f"each tag is 1-{MAX_TAG_LENGTH} characters of A-Z a-z 0-9 . _ : = / -")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise _bad(f"at most {MAX_TAGS} tags")
    return ",".join(tags) or None


def _bad(why: str) -> GatewayError:
    return bad_request(f"header '{HEADER}': {why}", param=HEADER)
