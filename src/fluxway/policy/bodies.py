"""Request and response bodies kept with a call's usage record (``observability.logs.bodies``).

Two steps, so that serving never waits on the costly one:

* :meth:`BodyCapture.snapshot`, in the usage hook's ``post``: the request body and the answer (a
  stream's assembled one) serialised with orjson and cut to a little over the size cap — a few
  microseconds; the bytes stay in memory with the spooled record, never on disk;
* :meth:`BodyCapture.settle`, in the background flush: decoded, masked (``redacted``: the
  :class:`~fluxway.redact.Redactor`'s secrets and key shapes, then :func:`~fluxway.pii.mask_pii`),
  cut to ``max_body_bytes`` with the cut marked, and given a ``body_status``.

``body_status`` says what a record's bodies are, or why there are none:

========== ==============================================================================
off        capture is off: no bodies
full       the bodies as sent and answered
redacted   the bodies with secrets and personal data masked
truncated  a body was longer than ``max_body_bytes`` and was cut (the cut is marked)
stream_cut the stream ended early: the response body is what had been delivered
lost       the record reached the store from the spool after a crash, a store outage or a
           backlog past ``usage.max_in_memory``: bodies are held in memory only (never written
           unmasked to disk), so they are gone
dropped    the flush had fallen behind: captured bodies waiting for it had reached
           ``observability.logs.body_backlog_mb``, so this record kept none (memory stays bounded)
========== ==============================================================================

A call that failed has a request body and no response body (its ``error`` says why).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from fluxway.pii import mask_pii
from fluxway.policy.hooks import CallContext, Outcome
from fluxway.redact import Redactor

BodyMode = Literal["off", "redacted", "full"]

PENDING = "_bodies"  # the in-memory field holding a record's snapshot until the flush settles it
LOST = "lost"  # what a record read back from the spool says (its snapshot was in memory only)
DROPPED = "dropped"  # a record captured while the bodies waiting for the flush were over the cap
# Bytes kept past the cap before masking, so that a secret straddling the cut is still recognised.
_SLACK = 256


def _dump(value: Any, limit: int) -> tuple[bytes, int]:
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        data = orjson.dumps(str(value))
    return data[:limit], len(data)


def _cut(text: str, limit: int, total: int) -> tuple[str, bool]:
    raw = text.encode("utf-8")
    if len(raw) <= limit and total <= limit + _SLACK:
        return text, False
    kept = raw[:limit].decode("utf-8", "ignore")
    return f"{kept}…[truncated: {total} bytes]", True


class BodyCapture:
    """How one gateway captures bodies: the mode, the cap, the secrets to mask."""

    __slots__ = ("max_bytes", "mode", "redactor")

    def __init__(self, mode: BodyMode = "redacted", max_bytes: int = 32768, redactor: Redactor | None = None) -> None:
        self.mode = mode
        self.max_bytes = max_bytes
        self.redactor = redactor or Redactor()

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def snapshot(self, ctx: CallContext, outcome: Outcome) -> tuple[Any, ...]:
        """The call's bodies as capped bytes (cheap; run in the post hook)."""
        limit = self.max_bytes + _SLACK
        req = _dump(ctx.request.body, limit)
        resp = _dump(outcome.response.body, limit) if outcome.response is not None else None
        return req, resp, ctx.partial is not None

    @staticmethod
    def size(snapshot: tuple[Any, ...]) -> int:
        """The bytes a snapshot holds (what the backlog cap counts)."""
        req, resp = snapshot[0], snapshot[1]
        return len(req[0]) + (len(resp[0]) if resp is not None else 0)

    def settle(self, record: dict[str, Any]) -> None:
        """Turn a record's snapshot into its stored bodies and ``body_status`` (run in the flush)."""
        snap = record.pop(PENDING, None)
        if snap is None:
            return
        req, resp, cut = snap
        truncated = False
        bodies: list[str | None] = []
        for part in (req, resp):
            if part is None:
                bodies.append(None)
                continue
            data, total = part
            text = data.decode("utf-8", "ignore")
            if self.mode == "redacted":
                text = mask_pii(self.redactor.text(text))
            text, was_cut = _cut(text, self.max_bytes, total)
            truncated = truncated or was_cut
            bodies.append(text)
        record["request_body"], record["response_body"] = bodies
        record["body_status"] = "stream_cut" if cut else "truncated" if truncated else self.mode
