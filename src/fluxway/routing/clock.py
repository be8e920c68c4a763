"""The one clock type: every component that reads time takes a plain ``() -> float`` callable.

Routing passes :func:`time.monotonic`, keys and governance :func:`time.time`; tests pass a
:class:`ManualClock` and move time by hand.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds
        return self.now
