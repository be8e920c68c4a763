"""Request ids: the shape a client's ``x-request-id`` must have to be kept, and a fresh one otherwise.

Kept apart from the store (which also normalises the ids of usage records) so the serving path
checks a header without loading the database layer.
"""

from __future__ import annotations

import os
import re

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def normalise_request_id(value: str | None) -> str | None:
    """``value`` when it is a well-formed request id, else None (the caller makes a new one)."""
    if value is not None and REQUEST_ID_RE.fullmatch(value):
        return value
    return None
