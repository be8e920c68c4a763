"""Usage records the store refused, or spool lines that could not be read: kept aside, never retried.

Each goes to ``<spool_dir>/quarantine.jsonl`` as one JSON line ``{"at", "reason", "record"}`` (or
``"line"`` for an unreadable spool line, as text) for an operator to inspect; ``count`` feeds the
``fluxway_usage_quarantined_total`` metric.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("fluxway.usage")

FILE_NAME = "quarantine.jsonl"


class Quarantine:
    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self.count = 0

    def _write(self, entry: dict[str, Any]) -> None:
        self.count += 1
        data = orjson.dumps(entry, default=repr) + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("usage quarantine %s not written: %s", self.path, exc)

    def record(self, record: Mapping[str, Any], reason: str) -> None:
        """A record the store refused."""
        try:
            self._write({"at": time.time(), "reason": reason, "record": dict(record)})
        except (TypeError, orjson.JSONEncodeError):  # an integer over 64 bits, say: keep its text
            self._write({"at": time.time(), "reason": reason, "record": repr(dict(record))})

    def line(self, source: str, line: bytes, reason: str) -> None:
        """A spool line that is not a usage record."""
        log.warning("usage spool %s: unreadable line (%d bytes) quarantined: %s", source, len(line), reason)
        self._write({"at": time.time(), "reason": reason, "source": source,
                     "line": line[:65536].decode("utf-8", "replace")})
