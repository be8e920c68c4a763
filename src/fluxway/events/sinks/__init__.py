"""Event sinks: where delivered events go. Each is loaded only when the config names one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fluxway.events.sinks.base import DeliveryError, Sent, Sink

if TYPE_CHECKING:
    from fluxway.events.settings import NatsSink, RedisStreamSink, WebhookSink


def create_sink(cfg: WebhookSink | RedisStreamSink | NatsSink, redis_url: str | None) -> Sink:
    """The sink a config entry describes (its client library imported here, not before)."""
    sink: Any
    if cfg.type == "webhook":
        from fluxway.events.sinks.webhook import WebhookDelivery

        sink = WebhookDelivery(cfg)
    elif cfg.type == "redis_stream":
        from fluxway.events.sinks.redis_stream import RedisStreamDelivery

        assert redis_url is not None  # config.py refuses a redis_stream sink without redis.url
        sink = RedisStreamDelivery(cfg, redis_url)
    else:
        from fluxway.events.sinks.nats import NatsDelivery

        sink = NatsDelivery(cfg)
    return sink  # type: ignore[no-any-return]


__all__ = ["DeliveryError", "Sent", "Sink", "create_sink"]
