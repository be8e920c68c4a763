"""What every sink does: deliver a batch of events in order, saying how far it got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fluxway.store.outbox import Claimed


class DeliveryError(Exception):
    """An event the sink did not take. ``retryable``: try again later (a 5xx, a timeout, the server
    down); otherwise the sink refused this event for good (a 4xx) and it is dropped (counted failed)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Sent:
    """``batch[:delivered]`` were delivered; when ``error`` is set, ``batch[delivered]`` failed with it
    (and the rest were not tried)."""

    delivered: int
    error: DeliveryError | None = None


class Sink(Protocol):
    name: str

    async def send(self, batch: Sequence[Claimed]) -> Sent: ...

    async def close(self) -> None: ...
