"""Log line formats (``observability.logs.format``): ``text`` for a terminal, ``json`` for collectors.

A JSON line is one object: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message``, then the request fields a call's line carries (:data:`REQUEST_FIELDS`, passed as
``extra=``) and ``exc`` with the traceback of a logged exception.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

REQUEST_FIELDS = (
    "request_id", "trace_id", "key_id", "model", "provider", "status",
    "latency_ms", "upstream_ms", "overhead_ms", "ttft_ms", "attempts", "cache",
)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header (``00-<32 hex>-<16 hex>-<2 hex>``), if valid."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    tid = parts[1].lower()
    return tid if all(c in "0123456789abcdef" for c in tid) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        ms = int(record.msecs)
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in REQUEST_FIELDS:
            value = fields.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()
