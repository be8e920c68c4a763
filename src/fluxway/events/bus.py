"""The producer's side of events: :class:`EventBus` and the event types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# Every event type a producer may emit (the ``type`` field of a delivered event).
EVENT_TYPES: tuple[str, ...] = (
    "usage",  # one per stored usage record
    "key.created",
    "key.revoked",
    "budget.threshold",  # a key's or team's spend crossed 50, 80 or 100 % of its budget
    "alert.fired",
    "alert.resolved",
    "breaker.opened",
    "breaker.closed",
)


class EventBus(Protocol):
    def emit(
        self, type: str, data: Mapping[str, Any], *, sinks: Sequence[str] | None = None, id: str | None = None
    ) -> None:
        """Queue one event for delivery (to ``sinks`` by name, or to every sink when None).

        ``id``: the event's id when the producer has a stable one (a usage record's, a budget
        threshold's per period), so an event emitted twice is stored and delivered once; by default
        a fresh unique id. Delivered events carry it (``x-fluxway-event-id``) for de-duplication.

        Returns at once; never raises and never awaits: a producer on the hot path pays a queue append.
        """
