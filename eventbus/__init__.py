"""The event bus: one adapter protocol (:mod:`eventbus.base`), NATS JetStream and Kafka behind it.

The relay publishes through :func:`get_adapter`, the process's adapter, chosen by the scheme of
``EVENT_BUS_URL``; it knows nothing of either broker.
"""

from __future__ import annotations

from eventbus.base import EventBusAdapter, from_settings

_adapter: EventBusAdapter | None = None


def get_adapter() -> EventBusAdapter:
    """The process's adapter, built from settings (``EVENT_BUS_URL`` and the stream or topic settings)."""
    global _adapter
    if _adapter is None:
        _adapter = new_adapter()
    return _adapter


def new_adapter() -> EventBusAdapter:
    """A new adapter built from settings, as :func:`get_adapter` builds the process's own."""
    from django.conf import settings

    if settings.EVENT_BUS.kind == "kafka":
        from eventbus.kafka import KafkaAdapter, TopicSettings  # librdkafka loads only where Kafka is used

        return KafkaAdapter(
            settings.EVENT_BUS,
            from_settings(TopicSettings, settings),
            publish_timeout=settings.KAFKA_PUBLISH_TIMEOUT_SECONDS,
            connect_timeout=settings.KAFKA_CONNECT_TIMEOUT_SECONDS,
        )
    from eventbus.jetstream import NatsJetStreamAdapter, StreamSettings

    return NatsJetStreamAdapter(
        settings.EVENT_BUS,
        from_settings(StreamSettings, settings, subjects=[f"{settings.NATS_SUBJECT_PREFIX}.>"]),
        publish_timeout=settings.NATS_PUBLISH_TIMEOUT_SECONDS,
        connect_timeout=settings.NATS_CONNECT_TIMEOUT_SECONDS,
    )


def reset_adapter() -> None:
    global _adapter
    if _adapter is not None:
        _adapter.close()
    _adapter = None
