"""One view of "what the event bus holds" over NATS JetStream and Kafka, for tests run on both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from tests.jetstream import stream_messages
from tests.kafka_topic import topic_messages

BUSES = ("nats", "kafka")


@dataclass
class Stored:
    event_id: str
    envelope: dict
    headers: dict[str, str]
    partition: int = 0  # kafka; NATS: one stream, one order


@dataclass
class Bus:
    kind: str
    server: Any  # tests.conftest.NatsServer or KafkaServer
    overrides: Any = None  # pytest-django's ``settings`` fixture: changes made through it are undone

    @property
    def url(self) -> str:
        return self.server.url

    def messages(self) -> list[Stored]:
        """Everything the bus holds for this test (NATS: stream order; Kafka: by partition, offset)."""
        if self.kind == "nats":
            return [
                Stored(m.msg_id or "", m.envelope, m.headers)
                for m in stream_messages(self.url, settings.NATS_STREAM_NAME)
            ]
        return [
            Stored(r.event_id, r.envelope, r.headers, r.partition)
            for r in topic_messages(self.server.bootstrap, settings.KAFKA_TOPIC)
        ]

    def limit_message_size(self, size: int) -> None:
        """Make events over ``size`` bytes poison (the stream's limit; the producer's on Kafka)."""
        import eventbus as bus

        if self.kind == "nats":
            self.overrides.NATS_STREAM_MAX_MSG_SIZE = size
        else:
            self.overrides.KAFKA_MAX_MESSAGE_BYTES = size
        bus.reset_adapter()

    def relay_env(self) -> dict[str, str]:
        """The variables a relay subprocess needs to use this test's stream or topic."""
        if self.kind == "nats":
            return {
                "EVENT_BUS_URL": self.url,
                "NATS_STREAM_NAME": settings.NATS_STREAM_NAME,
                "NATS_SUBJECT_PREFIX": settings.NATS_SUBJECT_PREFIX,
            }
        return {"EVENT_BUS_URL": self.url, "KAFKA_TOPIC": settings.KAFKA_TOPIC, "KAFKA_TOPIC_PARTITIONS": "3"}


def per_aggregate(stored: list[Stored]) -> dict[str, list[int]]:
    """aggregate id -> the versions the bus holds, in the bus's order (a partition's, on Kafka)."""
    versions: dict[str, list[int]] = {}
    for message in stored:
        versions.setdefault(message.envelope["aggregateid"], []).append(message.envelope["aggregateversion"])
    return versions
