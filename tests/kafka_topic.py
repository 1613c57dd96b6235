"""Reading what actually landed in a Kafka topic (a real broker), for assertions.

Consumer groups are slow to join on the test broker, so the topic is read by explicit partition
assignment, from the beginning.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

QUIET = logging.getLogger("tests.kafka")
INTEGER_ATTRIBUTES = ("aggregateversion",)


@dataclass
class KafkaRecord:
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes

    @property
    def envelope(self) -> dict:
        """The CloudEvent, from binary mode (``ce_*`` headers) or structured mode (the value)."""
        if self.headers.get("content-type", "").startswith("application/cloudevents+json"):
            return json.loads(self.value)
        event: dict = {name[3:]: value for name, value in self.headers.items() if name.startswith("ce_")}
        for attribute in INTEGER_ATTRIBUTES:
            if attribute in event:
                event[attribute] = int(event[attribute])
        event["datacontenttype"] = self.headers.get("content-type")
        event["data"] = json.loads(self.value)
        return event

    @property
    def event_id(self) -> str:
        return self.envelope["id"]


def topic_messages(bootstrap: str, topic: str, idle: float = 1.0, timeout: float = 30.0) -> list[KafkaRecord]:
    """Every record of ``topic``, by partition then offset ([] when the topic does not exist).

    Read until nothing came for ``idle`` seconds: the test broker's ListOffsets answers are not
    reliable (the high watermark lags), so they cannot tell where a partition ends. The idle clock
    starts with the broker's first answer (a record or a partition's end), not before: on a busy
    machine connecting and the first fetch can take longer than ``idle``.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "iam-tests-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": QUIET,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return []
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in found.partitions])
        records: list[KafkaRecord] = []
        deadline = time.monotonic() + timeout
        last: float | None = None  # when the broker last answered
        while (last is None or time.monotonic() - last < idle) and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF and last is None:
                    last = time.monotonic()
                continue
            last = time.monotonic()
            records.append(
                KafkaRecord(
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key().decode() if message.key() is not None else None,
                    headers={name: value.decode() for name, value in (message.headers() or [])},
                    value=message.value(),
                )
            )
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def topic_partitions(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET}).list_topics(timeout=10)
    return len(metadata.topics[topic].partitions)
