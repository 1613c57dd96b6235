"""A property of the relay, on random interleavings (Hypothesis), against a real NATS JetStream server.

Each example draws a program: writes of events for a handful of aggregates (some too large for the
stream: rejected, per event), relay runs, relay runs during which a second relay and a writer act,
runs whose bus goes away (nothing sent) or whose acknowledgements are lost (sent, not marked), runs
while another relay holds one lane, time passing (backoffs expire), and changes of
``OUTBOX_PARTITIONS``. After every step: for each aggregate
the published rows are a prefix of its rows in sequence order. At the end the operator lifts the
size limit and retries the parked events: then every event is in the stream exactly once (JetStream
drops the copies by ``Nats-Msg-Id``), and a consumer that dedupes by id sees every aggregate's
versions in order.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import eventbus
from eventbus import get_adapter
from eventbus.base import BatchResult, EventBusAdapter, Message
from outbox import services as outbox_services
from outbox.events import AggregateEvent
from outbox.models import OutboxEvent
from outbox.partitions import Lane
from outbox.relay import OutboxWorker
from tests.faults import FaultyAdapter
from tests.jetstream import stream_messages
from tests.outbox_helpers import lane_held

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.nats]

AGGREGATES = 5
LIMIT = 2048  # the stream's max_msg_size while the program runs: a "poison" event is over it

write = st.tuples(st.just("write"), st.integers(0, AGGREGATES - 1), st.integers(1, 3), st.just(False))
poison_write = st.tuples(st.just("write"), st.integers(0, AGGREGATES - 1), st.just(1), st.just(True))
step = st.one_of(
    write,
    write,
    poison_write,
    st.tuples(st.just("relay")),
    st.tuples(st.just("relay")),
    st.tuples(st.just("concurrent"), st.integers(0, AGGREGATES - 1)),
    st.tuples(st.just("bus_down"), st.integers(1, 3)),
    st.tuples(st.just("acks_lost"), st.integers(1, 3)),
    st.tuples(st.just("time_passes")),
    st.tuples(st.just("partitions"), st.sampled_from([1, 3, 8])),
    st.tuples(st.just("lane_held"), st.integers(0, 15)),
    st.tuples(st.just("lane_held"), st.integers(0, 15)),
)


class Unreachable:
    """The bus gone from the ``down_from``-th batch on: nothing is sent, every batch fails as transport."""

    def __init__(self, inner: EventBusAdapter, down_from: int) -> None:
        self.inner, self.down_from, self.batches = inner, down_from, 0

    def _down(self) -> bool:
        self.batches += 1
        return self.batches >= self.down_from

    def publish_batch(self, messages: Sequence[Message]) -> BatchResult:
        return self.publish_batch_result(self.publish_batch_start(messages))

    def publish_batch_start(self, messages: Sequence[Message]) -> Any:
        return None if self._down() else self.inner.publish_batch_start(messages)

    def publish_batch_result(self, handle: Any) -> BatchResult:
        if handle is None:
            return BatchResult(acked=0, error=ConnectionRefusedError("event bus unreachable"), per_event=False)
        return self.inner.publish_batch_result(handle)

    def ensure_stream(self) -> None:
        self.inner.ensure_stream()

    def close(self) -> None:
        self.inner.close()


def lose_acks_from(first: int) -> FaultyAdapter:
    """The real adapter, whose answers from the ``first``-th batch on never reach the relay (a timeout)."""

    def lost(number: int, result: BatchResult) -> None:
        if number >= first:
            result.acked, result.duplicates, result.acked_after_failure = 0, 0, []
            result.error, result.per_event = TimeoutError("acknowledgements lost"), False

    return FaultyAdapter(get_adapter(), after_result=lost)


class Program:
    """The example's outbox writer and its view of what it wrote."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.tenant = uuid.uuid4()
        self.aggregates = [uuid.uuid4() for _ in range(AGGREGATES)]
        self.versions = [0] * AGGREGATES
        self.poison: set[uuid.UUID] = set()

    def write(self, index: int, count: int, poison: bool) -> None:
        rows = []
        for _ in range(count):
            self.versions[index] += 1
            data = {"n": self.versions[index], "blob": "x" * (3 * LIMIT if poison else 10)}
            rows.append(
                outbox_services.event_build(
                    AggregateEvent("UserUpdated", self.tenant, self.aggregates[index], self.versions[index], data)
                )
            )
        if poison:
            self.poison.update(row.event_id for row in rows)
        with transaction.atomic():
            outbox_services.events_record(rows)

    def concurrent(self, index: int) -> None:
        """A relay run during whose first batch a second relay runs and a write commits (other threads)."""

        def meanwhile(number: int, _messages: Sequence[Message]) -> None:
            if number == 1:
                for target in (lambda: self.write(index, 1, False), lambda: OutboxWorker().run()):
                    thread = threading.Thread(target=_closing(target))
                    thread.start()
                    thread.join(60)
                    assert not thread.is_alive()

        OutboxWorker(adapter=FaultyAdapter(get_adapter(), before_publish=meanwhile)).run()


def _closing(target: Any) -> Any:
    def run() -> None:
        from django.db import connection

        try:
            target()
        finally:
            connection.close()

    return run


def published_rows_are_prefixes() -> None:
    statuses: dict[uuid.UUID, list[str]] = {}
    for aggregate, status in OutboxEvent.objects.order_by("sequence").values_list("aggregate_id", "status"):
        statuses.setdefault(aggregate, []).append(status)
    for aggregate, seq in statuses.items():
        published = [s == "published" for s in seq]
        assert published == sorted(published, reverse=True), f"{aggregate}: published out of order {seq}"


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The interleaving a change of OUTBOX_PARTITIONS must survive, always tried: an aggregate's event
# pending in the old layout's lane, held by another relay, and its next event in a lane of the new one.
@example(
    program=[("write", 0, 1, False), ("partitions", 8), ("write", 0, 1, False), ("lane_held", 0), ("relay",)],
    first_partitions=1,
)
# A rejected event and its aggregate's next one in one pipelined batch.
@example(program=[("write", 0, 1, True), ("write", 0, 1, False), ("relay",)], first_partitions=8)
@given(program=st.lists(step, min_size=3, max_size=18), first_partitions=st.sampled_from([1, 3, 8]))
def test_any_interleaving_delivers_every_event_once_in_aggregate_order(
    event_bus, settings, program: list[tuple], first_partitions: int
) -> None:  # type: ignore[no-untyped-def]
    OutboxEvent.objects.all().delete()
    example = uuid.uuid4().hex[:12]
    settings.NATS_STREAM_NAME = f"PROP_{example.upper()}"  # a stream and subjects of the example's own
    settings.NATS_SUBJECT_PREFIX = f"prop{example}"
    settings.NATS_STREAM_MAX_MSG_SIZE = LIMIT
    settings.OUTBOX_MAX_ATTEMPTS = 2
    settings.OUTBOX_PARTITIONS = first_partitions
    eventbus.reset_adapter()
    writer = Program(settings)

    for action, *args in program:
        if action == "write":
            writer.write(*args)
        elif action == "relay":
            OutboxWorker().run()
        elif action == "concurrent":
            writer.concurrent(*args)
        elif action == "bus_down":
            OutboxWorker(adapter=Unreachable(get_adapter(), args[0])).run()
        elif action == "acks_lost":
            OutboxWorker(adapter=lose_acks_from(args[0])).run()
        elif action == "time_passes":
            OutboxEvent.objects.filter(next_attempt_at__isnull=False).update(
                next_attempt_at=timezone.now() - timedelta(seconds=1)
            )
        elif action == "lane_held":  # another relay holds one lane with pending rows: this run relays the others
            pending = sorted(
                set(OutboxEvent.objects.filter(status="pending").values_list("partition_count", "partition"))
            )
            with lane_held(Lane(*pending[args[0] % len(pending)]) if pending else Lane(1, 0)):
                OutboxWorker().run()
        elif action == "partitions":
            settings.OUTBOX_PARTITIONS = args[0]
        published_rows_are_prefixes()

    # A transport failure never counted an attempt; only the poison events did.
    assert set(OutboxEvent.objects.filter(attempts__gt=0).values_list("event_id", flat=True)) <= writer.poison

    # The operator lifts the limit and retries what was parked; the relay drains the rest.
    settings.NATS_STREAM_MAX_MSG_SIZE = -1
    eventbus.reset_adapter()
    for _ in range(20):
        parked = list(OutboxEvent.objects.filter(status="failed").values_list("sequence", flat=True))
        outbox_services.outbox_retry(sequences=parked)
        OutboxEvent.objects.filter(next_attempt_at__isnull=False).update(next_attempt_at=None)
        result = OutboxWorker().run()
        assert not result.transport_error, result.transport_error
        published_rows_are_prefixes()
        if not OutboxEvent.objects.exclude(status="published").exists():
            break
    assert not OutboxEvent.objects.exclude(status="published").exists()

    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    rows = {str(event_id) for event_id in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert sorted(m.msg_id or "" for m in stored) == sorted(rows)  # no loss, none stored twice
    consumer: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in stored:  # a consumer that dedupes by id
        if message.envelope["id"] in seen:
            continue
        seen.add(message.envelope["id"])
        consumer.setdefault(message.envelope["aggregateid"], []).append(message.envelope["aggregateversion"])
    for index, aggregate in enumerate(writer.aggregates):
        assert consumer.get(str(aggregate), []) == list(range(1, writer.versions[index] + 1))
    eventbus.reset_adapter()
