"""What the gateway shows operators: Prometheus metrics (:mod:`.metrics` keeps them on the request
path as plain numbers; :mod:`.exposition` renders them at scrape time)."""

from __future__ import annotations

from fluxway.observability.exposition import render
from fluxway.observability.metrics import RequestStats

__all__ = ["RequestStats", "render"]
