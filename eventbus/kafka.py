"""The Kafka implementation of the EventBusAdapter (confluent-kafka, i.e. librdkafka).

One topic per deployment (``KAFKA_TOPIC``), created if absent with ``KAFKA_TOPIC_PARTITIONS``
partitions. Every event is keyed by its aggregate id, so one aggregate's events land in one
partition, in the order the relay produced them. The producer is idempotent (``acks=all``,
``enable.idempotence=true``): librdkafka's own retries never duplicate or reorder a partition.
That deduplication lasts one producer session only; a relay that dies between delivery and marking
publishes the event again under a new session, which is why consumers dedupe on the CloudEvent
``id`` (docs/events.md). Kafka transactions are not used: the outbox row, not a Kafka transaction,
is the unit of exactly-once on our side.

Events follow the CloudEvents Kafka protocol binding: binary content mode by default (``ce_*``
headers, ``content-type`` of the data, the data as the value), structured mode as a setting (the
JSON event format as the value, ``content-type: application/cloudevents+json``).

A batch is produced at once, on the adapter's thread (building the binding overlaps the relay's
database work), and librdkafka pipelines it; the delivery reports, served by ``poll()``,
give the acknowledged prefix. ``message.timeout.ms`` equals the publish timeout, so every message
gets its final report (delivered, or failed) within it and the relay's transaction stays bounded.
The producer is created per process (librdkafka's threads do not survive a fork), and replaced when
it cannot go on: after a fatal error, or after two batches that failed while the broker answered the
topic's lookup (its idempotence state stuck), and with the adapter's thread when a call outlives its
bound. Its principal needs WRITE and DESCRIBE on the topic (CREATE too, for the relay to create it)
and, on brokers older than Kafka 2.8, IDEMPOTENT_WRITE on the cluster; without them every publish
fails with TOPIC_AUTHORIZATION_FAILED or CLUSTER_AUTHORIZATION_FAILED, a transport failure
(docs/runbook.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from core.config import EventBusConfig
from eventbus.base import CLOUDEVENTS_CONTENT_TYPE, AdapterBase, BatchResult, Message
from eventbus.kafka_errors import (
    PRODUCER_STATE_CODES,
    STUCK_BATCHES,
    TOPIC_MISSING_CODES,
    KafkaDeliveryError,
    is_per_event,
    kafka_error,
    serving,
)

logger = logging.getLogger("iam.EventBusAdapter")

BINARY, STRUCTURED = "binary", "structured"
CLOUDEVENTS_MODES = (BINARY, STRUCTURED)


@dataclass(frozen=True)
class TopicSettings:
    name: str = field(metadata={"setting": "KAFKA_TOPIC"})
    partitions: int = field(metadata={"setting": "KAFKA_TOPIC_PARTITIONS"})
    # -1: the broker's default.replication.factor
    replication_factor: int = field(default=-1, metadata={"setting": "KAFKA_TOPIC_REPLICATION_FACTOR"})
    cloudevents_mode: str = field(default=BINARY, metadata={"setting": "KAFKA_CLOUDEVENTS_MODE"})
    max_message_bytes: int = field(default=1_000_000, metadata={"setting": "KAFKA_MAX_MESSAGE_BYTES"})
    linger_ms: int = field(default=5, metadata={"setting": "KAFKA_LINGER_MS"})


def kafka_record(message: Message, mode: str) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """(value, headers) of one event under the CloudEvents Kafka protocol binding."""
    if mode == STRUCTURED:
        return message.payload, [("content-type", f"{CLOUDEVENTS_CONTENT_TYPE}; charset=UTF-8".encode())]
    envelope = orjson.loads(message.payload)
    data = envelope.pop("data", None)
    content_type = envelope.pop("datacontenttype", "application/json")
    headers = [("content-type", content_type.encode())]
    for attribute, value in envelope.items():
        # Binary mode: each context attribute is a ce_<name> header, its value as a string
        # (aggregateversion, an Integer, as its decimal digits).
        text = value if isinstance(value, str) else str(value) if type(value) is int else orjson.dumps(value).decode()
        headers.append((f"ce_{attribute}", text.encode()))
    return orjson.dumps(data), headers


class _Batch:
    """The delivery reports of one produced batch (filled by librdkafka's callbacks during poll())."""

    def __init__(self, size: int) -> None:
        self.reports: list[KafkaError | Literal[False] | None] = [False] * size  # False: no report yet
        self.outstanding = 0
        self.stop: tuple[int, BaseException] | None = None
        self.failure: BaseException | None = None  # the producer failed while waiting for the reports
        self.broker_answered = False  # the topic was looked up (and found or created) for this batch
        self.produced_future: Future[None] = Future()

    def callback(self, index: int) -> Callable[[KafkaError | None, Any], None]:
        def delivered(error: KafkaError | None, _message: Any) -> None:
            self.reports[index] = error
            self.outstanding -= 1

        return delivered


class KafkaAdapter(AdapterBase):
    def __init__(self, config: EventBusConfig, topic: TopicSettings, **timeouts: float) -> None:
        if topic.cloudevents_mode not in CLOUDEVENTS_MODES:
            raise ValueError(f"KAFKA_CLOUDEVENTS_MODE must be one of {', '.join(CLOUDEVENTS_MODES)}")
        super().__init__(config, **timeouts)
        self.topic = topic
        self._producer: Producer | None = None
        self._topic_ready = False
        self._stuck_batches = 0  # batches the producer failed, the broker answering, since it delivered
        self._thread: ThreadPoolExecutor | None = None
        self._thread_pid = -1

    # --- clients ----------------------------------------------------------------------------------
    def _client_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": ",".join(self.config.servers),
            "client.id": f"iam-service-relay-{os.getpid()}",
            "socket.connection.setup.timeout.ms": max(int(self.connect_timeout * 1000), 1000),
            "reconnect.backoff.max.ms": 1000,
            "logger": _LIBRDKAFKA_LOGGER,
            **self.config.kafka_options,
        }

    def producer_config(self) -> dict[str, Any]:
        """The producer's settings (also used by the benchmark's raw-producer baseline)."""
        return {
            **self._client_config(),
            "enable.idempotence": True,
            "acks": "all",
            # Only ensure_stream() creates the topic, with KAFKA_TOPIC_PARTITIONS: never the broker's
            # auto-creation (its default partition count) when a producer asks for a missing topic.
            "allow.auto.create.topics": False,
            "linger.ms": self.topic.linger_ms,
            "message.max.bytes": self.topic.max_message_bytes,
            # Every message gets its final delivery report within the publish timeout.
            "message.timeout.ms": max(int(self.publish_timeout * 1000), 1000),
            "error_cb": _on_client_error,
        }

    def _get_producer(self) -> Producer:
        with self._lock:
            if self._pid != os.getpid() or self._producer is None:
                self._pid = os.getpid()  # a forked child builds its own: librdkafka's threads stay behind
                # The topic's state is not the producer's: after a fatal error _after_error has already
                # asked for it to be looked up again; after ensure_stream() a second look costs a round trip.
                self._producer = Producer(self.producer_config())
            return self._producer

    def _discard_producer(self) -> None:
        """After a fatal error an idempotent producer cannot go on: the next batch builds a new one.

        E.g. UNKNOWN_PRODUCER_ID or OUT_OF_ORDER_SEQUENCE_NUMBER when a broker lost the producer's state
        (tests/test_relay.py's outage test on the memory-only test broker goes through this).
        """
        with self._lock:
            producer, self._producer = self._producer, None
            self._stuck_batches = 0
        if producer is not None and self._pid == os.getpid():
            with contextlib.suppress(KafkaException):  # it is beyond use: drop what it holds
                serving(producer.purge)
                serving(producer.flush, 0)

    # --- the topic --------------------------------------------------------------------------------
    def ensure_stream(self) -> None:
        """Create the topic with the configured partition count if it does not exist (idempotent)."""
        admin = AdminClient(self._client_config())
        metadata = admin.list_topics(timeout=self.connect_timeout + self.publish_timeout)
        existing = metadata.topics.get(self.topic.name)
        if existing is None or existing.error is not None:
            new = NewTopic(self.topic.name, self.topic.partitions, self.topic.replication_factor)
            future = admin.create_topics([new], request_timeout=self.publish_timeout)[self.topic.name]
            try:
                future.result(self.connect_timeout + self.publish_timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            logger.info(
                "created the event topic",
                extra={"component": "EventBusAdapter", "topic": self.topic.name, "partitions": self.topic.partitions},
            )
        self._topic_ready = True

    # --- publishing -------------------------------------------------------------------------------
    def publish_batch(self, messages: Sequence[Message]) -> BatchResult:
        return self.publish_batch_result(self.publish_batch_start(messages))

    def publish_batch_start(self, messages: Sequence[Message]) -> _Batch:
        """Start producing a batch on the adapter's thread and return at once: building the records and
        handing them to librdkafka overlaps the caller's database work (marking the previous batch)."""
        batch = _Batch(len(messages))
        batch.produced_future = self._get_thread().submit(self._produce, batch, messages)
        return batch

    def _get_thread(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._thread_pid != os.getpid() or self._thread is None:
                self._thread_pid = os.getpid()  # threads do not survive a fork either
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-produce")
            return self._thread

    def _abandon_thread(self) -> None:
        """The next batch gets a new thread and a new producer: a thread that outlived every bound
        on its calls would otherwise hold back every later batch of this process."""
        with self._lock:
            self._thread = None
        self._discard_producer()

    def _produce(self, batch: _Batch, messages: Sequence[Message]) -> None:
        try:
            producer = self._get_producer()
            if not self._topic_ready:
                self.ensure_stream()
                batch.broker_answered = True
        except Exception as exc:  # noqa: BLE001 - the batch fails as a whole; classified in the result
            batch.stop = (0, exc)
            return
        for index, message in enumerate(messages):
            value, headers = kafka_record(message, self.topic.cloudevents_mode)
            try:
                producer.produce(
                    self.topic.name,
                    value=value,
                    key=message.key.encode() if message.key else None,
                    headers=headers,
                    on_delivery=batch.callback(index),
                )
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is not None and is_per_event(error):
                    batch.reports[index] = error  # refused before sending (too large): only this event
                    continue
                batch.stop = (index, exc)
                break
            except BufferError as exc:  # the local queue is full: the transport is not keeping up
                batch.stop = (index, exc)
                break
            batch.outstanding += 1
        # Send what linger.ms still holds now (flush() overrides it) and serve the delivery reports
        # here, so the caller's wait for them starts with the round trip already under way.
        try:
            serving(producer.flush, self.publish_timeout)
        except KafkaException as exc:  # fatal (e.g. the broker forgot our producer id): start afresh
            batch.failure = exc

    def publish_batch_result(self, handle: _Batch) -> BatchResult:
        """Wait (bounded by the publish timeout) for a started batch's delivery reports."""
        try:  # building and producing take no network round trip (ensure_stream's are bounded)
            handle.produced_future.result(self.connect_timeout + self.publish_timeout * 2 + 2.0)
        except FutureTimeout as exc:  # every call on that thread is bounded: it is wedged, or gone
            handle.stop = handle.stop or (0, exc)
            self._abandon_thread()
        except Exception as exc:  # noqa: BLE001 - a transport failure
            handle.stop = handle.stop or (0, exc)
        # message.timeout.ms = the publish timeout: every produced message has its report by then.
        deadline = time.monotonic() + self.publish_timeout + 2.0
        producer = self._producer
        if handle.failure is not None:
            self._after_error(handle.failure)
        while handle.outstanding > 0 and producer is not None and handle.failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                serving(producer.poll, min(remaining, 0.1))
            except KafkaException as exc:  # fatal (e.g. the broker forgot our producer id): start afresh
                handle.failure = exc
                self._after_error(exc)
                break
        result = BatchResult(acked=0)
        limit = handle.stop[0] if handle.stop is not None else len(handle.reports)
        for index in range(limit):
            report = handle.reports[index]
            if report is None:
                result.acked += 1
                continue
            if report is not False:
                error: BaseException = KafkaDeliveryError(report)
            else:
                error = handle.failure or TimeoutError("no delivery report within the publish timeout")
            result.error, result.per_event = error, is_per_event(error)
            # Later events (other aggregates: the relay sends one per aggregate per batch) that were
            # delivered may be marked; the failed one and its aggregate's later events wait.
            result.acked_after_failure = [later for later in range(index + 1, limit) if handle.reports[later] is None]
            break
        else:
            if handle.stop is not None:
                result.error, result.per_event = handle.stop[1], is_per_event(handle.stop[1])
        if result.error is not None:
            self._after_error(result.error, broker_answered=handle.broker_answered)
        else:
            self._stuck_batches = 0
        return result

    def _after_error(self, error: BaseException, *, broker_answered: bool = False) -> None:
        found = kafka_error(error)
        if broker_answered and not is_per_event(error):
            # The broker answered the topic's lookup for this very batch, yet the batch failed on the
            # transport. Twice since it last delivered, and the producer's own state is stuck (an
            # idempotent producer whose id a restarted broker no longer knows retries that id until
            # every message times out, run after run): a new one starts with new connections and a
            # new producer id. Not at the first time: a new producer may spend its first batch (a
            # publish timeout) acquiring its id.
            self._stuck_batches += 1
            if self._stuck_batches >= STUCK_BATCHES:
                self._topic_ready = False
                self._discard_producer()
                return
        if found is None:  # no delivery report in time: a transport failure too
            self._topic_ready = False
            return
        if found.code() in TOPIC_MISSING_CODES or not is_per_event(found):
            # Deleted under us, or a broker that came back without it (librdkafka often reports a
            # missing topic as _MSG_TIMED_OUT): look again, and create it, before the next batch.
            self._topic_ready = False
        if found.fatal() or found.code() in PRODUCER_STATE_CODES:
            self._discard_producer()

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            thread, self._thread = self._thread, None
        if thread is not None and self._thread_pid == os.getpid():
            thread.shutdown(wait=True)
        if producer is not None and self._pid == os.getpid():
            with contextlib.suppress(KafkaException):
                serving(producer.flush, 5)


class _LibrdkafkaLog:
    """librdkafka's own log lines, at WARNING at most: while a broker is down librdkafka reports every
    reconnect attempt as an error; the operator's signal is the relay's one ``failed to publish event``
    line per run (and ``event_bus_errors_total``), as on NATS."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("iam.EventBusAdapter.librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        self.logger.log(min(level, logging.WARNING), message, *args, extra={"component": "EventBusAdapter"})


_LIBRDKAFKA_LOGGER = _LibrdkafkaLog()


def _on_client_error(error: KafkaError) -> None:
    """librdkafka's client-level errors (broker down, authentication): the relay counts and logs the
    failures of the events themselves; this is the context line."""
    authentication = error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
    level = logging.ERROR if error.fatal() or authentication else logging.DEBUG
    logger.log(
        level, "event bus client error: %s", error.str(), extra={"component": "EventBusAdapter", "code": error.name()}
    )
