"""bench/relay.py's events, its raw-client baselines (nats-py, confluent-kafka) and the relay run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from bench.lib.copy_rows import CopyRows
from bench.lib.progress import progress


def make_envelopes(count: int, tenant_id: uuid.UUID, prefix: str) -> list[tuple[str, str, bytes, dict]]:
    """(event id, subject, payload bytes, row fields) of realistic ``UserCreated`` events."""
    from django.utils import timezone

    from outbox.events import EVENT_TYPES, envelope, subject_for

    event = EVENT_TYPES["UserCreated"]
    subject = subject_for(prefix, tenant_id, event)
    now = timezone.now()
    out = []
    for index in range(count):
        event_id, user_id = uuid.uuid4(), uuid.uuid4()
        data = {
            "id": str(user_id),
            "tenant_id": str(tenant_id),
            "external_id": f"auth0|bench-{index:07d}",
            "email": f"bench-{index:07d}@example.com",
            "display_name": f"Bench User {index}",
            "status": "active",
            "attributes": {
                "department": ["engineering", "sales", "finance", "legal"][index % 4],
                "clearance": index % 6,
                "roles": ["reader", "editor"] if index % 3 else ["reader"],
                "hired_on": "2024-03-01",
            },
            "version": 1,
        }
        body = envelope(
            event_id=event_id,
            event=event,
            source="urn:citadel:iam-service",
            time=now,
            tenant_id=tenant_id,
            aggregate_id=user_id,
            aggregate_version=1,
            data=data,
        )
        payload = json.dumps(body, separators=(",", ":"))
        out.append((str(event_id), subject, payload.encode(), {"aggregate_id": user_id, "payload": payload}))
    return out


# --- (a) baseline ---------------------------------------------------------------------------------------
async def _baseline(url: str, stream: str, messages: list[tuple[str, str, bytes]]) -> float:
    import nats
    from nats.js.api import StorageType, StreamConfig

    subject_prefix = messages[0][1].split(".", 1)[0]
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await js.add_stream(
        StreamConfig(name=stream, subjects=[f"{subject_prefix}.>"], storage=StorageType.FILE, duplicate_window=7200)
    )
    bar = progress(len(messages), "baseline publish_async")
    started = time.perf_counter()
    futures = []
    for index, (event_id, subject, payload) in enumerate(messages):
        futures.append(await js.publish_async(subject, payload, headers={"Nats-Msg-Id": event_id}))
        if index % 1000 == 999:
            bar.update(1000)
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    bar.close()
    failed = sum(1 for future in futures if future.exception() is not None)
    stored = (await js.stream_info(stream)).state.messages
    await nc.close()
    if failed or stored != len(messages):
        raise RuntimeError(f"baseline: {failed} failed, {stored} stored of {len(messages)}")
    return elapsed


def kafka_baseline(
    adapter, topic: str, rows: list[tuple[str, str, bytes, dict]], *, encode_in_loop: bool = False
) -> float:  # type: ignore[no-untyped-def]
    """Raw confluent-kafka: the same records, the adapter's producer settings, a fresh topic.

    ``encode_in_loop``: build each record (the CloudEvents binding) inside the timed loop, as the relay must.
    """
    from dataclasses import replace

    from confluent_kafka import Producer

    from eventbus.base import Message
    from eventbus.kafka import KafkaAdapter, kafka_record

    KafkaAdapter(adapter.config, replace(adapter.topic, name=topic)).ensure_stream()
    mode = adapter.topic.cloudevents_mode
    messages = [
        Message(event_id=event_id, subject=subject, payload=payload, key=str(fields["aggregate_id"]))
        for event_id, subject, payload, fields in rows
    ]
    records = [] if encode_in_loop else [(m.key.encode(), *kafka_record(m, mode)) for m in messages]
    producer = Producer({**adapter.producer_config(), "message.timeout.ms": 60_000})
    failures: list[object] = []

    def delivered(error, _message) -> None:  # type: ignore[no-untyped-def]
        if error is not None:
            failures.append(error)

    # Warm, as the relay's producer is (``warm_relay``): an idempotent producer's first delivery waits
    # for its producer id, 0.5-1 s on librdkafka's retry timer — once per process, not per event.
    producer.produce(topic, value=b"{}", key=b"warm-up")
    producer.flush(30)
    bar = progress(len(messages), "baseline confluent-kafka produce")
    started = time.perf_counter()
    for index in range(len(messages)):
        if encode_in_loop:
            key, (value, headers) = messages[index].key.encode(), kafka_record(messages[index], mode)
        else:
            key, value, headers = records[index]
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve delivery reports, then go on
                producer.poll(0.05)
        if index % 1000 == 999:
            producer.poll(0)
            bar.update(1000)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    bar.close()
    if failures or remaining:
        raise RuntimeError(f"kafka baseline: {len(failures)} failed, {remaining} undelivered")
    return elapsed


def _kafka_count(bootstrap: str, topic: str) -> int:
    from tests.kafka_topic import topic_messages

    return len(topic_messages(bootstrap, topic, idle=2.0, timeout=300))


# --- (b) the relay --------------------------------------------------------------------------------------
def insert_rows(rows: list[tuple[str, str, bytes, dict]], tenant_id: uuid.UUID, *, partitions: int = 1) -> float:
    """COPY the events into the outbox table as pending rows (columns from the model's metadata), each
    in its partition among ``partitions`` as the write path puts it."""
    from django.db import connection, transaction
    from django.utils import timezone

    from outbox.models import OutboxEvent
    from outbox.partitions import partition_of

    started = time.perf_counter()
    per_row = ("event_id", "aggregate_id", "subject", "payload", "partition")
    copy_rows = CopyRows(
        OutboxEvent, per_row, created_at=timezone.now(), tenant_id=tenant_id, aggregate_version=1,
        event_type="UserCreated", aggregate_type="user", partition_count=partitions,
    )  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(copy_rows.sql) as copy:
        for event_id, subject, _, fields in rows:
            aggregate = fields["aggregate_id"]
            partition = partition_of(aggregate, partitions)
            copy.write_row(copy_rows.row(event_id, aggregate, subject, fields["payload"], partition))
    return time.perf_counter() - started


def warm_relay(tenant_id: uuid.UUID) -> None:
    """Relay one event before the clock starts: the relay's bus client connected (on Kafka, its producer
    id acquired), as in a worker that has been running. The event is the tenant's ``TenantCreated``."""
    from outbox.models import OutboxEvent
    from outbox.relay import OutboxWorker

    if not OutboxEvent.objects.filter(tenant_id=tenant_id).exists():
        raise RuntimeError("warm_relay: no event of the tenant to relay")
    result = OutboxWorker().run()
    if result.published < 1 or result.transport_error:
        raise RuntimeError(f"warm_relay: {result.as_dict()}")


class InstantBus:
    """A bus that acknowledges every event at once and sends nothing: the relay against it measures
    the relay's own ceiling (PostgreSQL's select and marking, and the Python between them)."""

    def publish_batch_start(self, messages: list) -> int:  # type: ignore[type-arg]
        return len(messages)

    def publish_batch_result(self, handle: int):  # type: ignore[no-untyped-def]
        from eventbus.base import BatchResult

        return BatchResult(acked=handle)

    def publish_batch(self, messages: list):  # type: ignore[no-untyped-def,type-arg]
        return self.publish_batch_result(self.publish_batch_start(messages))

    def ensure_stream(self) -> None:
        pass

    def close(self) -> None:
        pass


def relay_all(expected: int, adapter: object | None = None) -> tuple[float, int, int]:
    """Run the relay until nothing is pending; returns (seconds, published, runs)."""
    from outbox.models import OutboxEvent, QueuedEvent
    from outbox.relay import OutboxWorker

    worker = OutboxWorker(adapter)  # type: ignore[arg-type]
    bar = progress(expected, "relay OutboxWorker.run()")
    published = runs = 0
    started = time.perf_counter()
    while True:
        result = worker.run()
        runs += 1
        if result.transport_error:
            raise RuntimeError(f"relay transport error: {result.transport_error}")
        published += result.published
        bar.update(result.published)
        if not QueuedEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists():
            break
    elapsed = time.perf_counter() - started
    bar.close()
    return elapsed, published, runs


def _stream_messages(url: str, stream: str) -> int:
    async def count() -> int:
        import nats

        nc = await nats.connect(url)
        try:
            return (await nc.jsm().stream_info(stream)).state.messages
        finally:
            await nc.close()

    return asyncio.run(count())
