"""Events: what happened in the gateway, delivered at least once to the configured sinks.

The seam every producer uses is :class:`EventBus` (``Runtime.events``; ``None`` when no sink is
configured, so a gateway without events pays one ``None`` check). Producers call
``emit(type, data)``: it queues the event and returns at once, never blocking a call and never
raising; the outbox makes it durable and the dispatcher delivers it to the sinks.
"""

from fluxway.events.bus import EVENT_TYPES, EventBus

__all__ = ["EVENT_TYPES", "EventBus"]
