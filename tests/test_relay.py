"""The relay against a real NATS JetStream server and a real Kafka-compatible broker started by the fixtures.

Tests taking the ``bus`` fixture run once per bus: the relay's promises are the same on both.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY

from eventbus import get_adapter
from outbox import retention as outbox_retention
from outbox import services as outbox_services
from outbox.models import OutboxEvent
from outbox.partitions import partition_of
from outbox.relay import OutboxWorker, backoff_seconds
from tenants import services as tenant_services
from tests.buses import Bus, per_aggregate
from tests.conftest import KafkaServer, NatsServer, use_kafka
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.faults import STALL_AFTER_ACK, FaultyAdapter, read_until
from tests.jetstream import stream_messages
from tests.outbox_helpers import drain_outbox
from tests.tcp_proxy import TcpProxy
from users import services as user_services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.nats]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_relay_publishes_every_event_once_in_order(bus, partitions) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(5)]
    user_services.user_update(user=users[0], attributes={"level": 1})
    user_services.user_delete(user=users[1])
    result = drain_outbox()
    assert result.published == 9 and result.duplicates == 0
    assert not OutboxEvent.objects.filter(status="pending").exists()
    stored = bus.messages()
    rows = list(OutboxEvent.objects.order_by("sequence"))
    assert sorted(m.event_id for m in stored) == sorted(str(r.event_id) for r in rows)  # each once
    assert [m.envelope["id"] for m in stored] == [m.event_id for m in stored]
    expected: dict[str, list[int]] = {}
    for row in rows:
        expected.setdefault(str(row.aggregate_id), []).append(row.payload["aggregateversion"])
    assert per_aggregate(stored) == expected  # every aggregate's events in version order
    assert per_aggregate(stored)[str(users[0].id)] == [1, 2]
    assert {(r.partition_count, r.partition) for r in rows} <= {(partitions, p) for p in range(partitions)}
    assert all(r.partition == partition_of(r.aggregate_id, partitions) for r in rows)
    if bus.kind == "nats" and partitions > 1:  # one stream: each partition's rows in the outbox's order
        order = [m.event_id for m in stored]
        for partition in range(partitions):
            lane = [str(r.event_id) for r in rows if r.partition == partition]
            assert [event_id for event_id in order if event_id in set(lane)] == lane
    if bus.kind == "nats" and partitions == 1:  # one stream: the outbox's order overall
        assert [m.event_id for m in stored] == [str(r.event_id) for r in rows]
        nats_subjects = [m.subject for m in stream_messages(bus.url, settings.NATS_STREAM_NAME)]
        assert nats_subjects == [r.subject for r in rows]
        assert nats_subjects[0] == f"{settings.NATS_SUBJECT_PREFIX}.{tenant.id}.tenant.TenantCreated"


def test_every_message_says_it_is_a_structured_cloudevent(event_bus) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    UserFactory(tenant=tenant, external_id="u1")

    drain_outbox()

    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    assert len(stored) == 2
    for message in stored:
        assert message.headers["Content-Type"] == "application/cloudevents+json"
        assert message.headers["Nats-Msg-Id"] == message.envelope["id"]


def test_republishing_is_acked_as_duplicate_and_stored_once(event_bus) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme")
    drain_outbox()
    sequences = list(OutboxEvent.objects.values_list("sequence", flat=True))
    outbox_services.outbox_requeue(sequences=sequences)
    result = drain_outbox()
    assert result.published == 1 and result.duplicates == 1
    assert len(stream_messages(event_bus.url, settings.NATS_STREAM_NAME)) == 1


def test_second_relay_returns_busy_while_the_first_holds_the_lock(bus, partitions) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for i in range(3):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    outcome: dict = {}

    def second_relay() -> None:
        from django.db import connection

        try:
            outcome["result"] = OutboxWorker().run()
        finally:
            connection.close()

    def while_locked(number: int, _messages) -> None:  # type: ignore[no-untyped-def]
        if number == 1:  # the first relay holds the lock, its batch not yet sent
            thread = threading.Thread(target=second_relay)
            thread.start()
            thread.join(60)
            # Done while the first still holds the lock: had it waited for the lock, it could not be.
            outcome["returned_while_held"] = not thread.is_alive()

    first = OutboxWorker(adapter=FaultyAdapter(get_adapter(), before_publish=while_locked)).run()
    assert outcome["returned_while_held"]
    second = outcome["result"]
    assert second.busy and second.busy_partitions == 1
    # The held lane is the first relay's alone; the second relays the lanes nobody holds.
    assert first.published + second.published == 4 and second.partitions == partitions - 1
    if partitions == 1:
        assert second.published == 0 and first.published == 4
    stored = bus.messages()
    assert len(stored) == 4 and len({m.event_id for m in stored}) == 4


def test_rows_committed_during_a_batch_go_in_the_next_batch_of_the_lock(bus, partitions) -> None:  # type: ignore[no-untyped-def]
    late_rows_are_relayed_by_the_holder(bus, max_batches_per_lock=20)


def test_rows_committed_during_the_last_batch_are_relayed_after_letting_go(bus, partitions) -> None:  # type: ignore[no-untyped-def]
    late_rows_are_relayed_by_the_holder(bus, max_batches_per_lock=1)


def late_rows_are_relayed_by_the_holder(bus, *, max_batches_per_lock: int) -> None:  # type: ignore[no-untyped-def]
    """Committed after the holder selected its batch, while it holds the lock (their poke finds it
    taken): the holder relays them in the same run, by its next batch or by its look for due rows
    after letting the lock go (``max_batches_per_lock=1``: the batch is the round's last). The late
    row is the same tenant's update, so it lands in the held lane whatever ``OUTBOX_PARTITIONS`` is."""
    tenant = TenantFactory(slug="acme")
    busy: list = []

    def poke() -> None:  # what the late commit's on-commit poke runs
        busy.append(OutboxWorker().run().busy)

    def commit_more(number: int, _messages) -> None:  # type: ignore[no-untyped-def]
        if number == 1:
            thread = threading.Thread(
                target=lambda: (tenant_services.tenant_update(tenant=tenant, name="Late"), poke(), _close())
            )
            thread.start()
            thread.join(60)
            assert not thread.is_alive()

    worker = OutboxWorker(
        adapter=FaultyAdapter(get_adapter(), before_publish=commit_more), max_batches_per_lock=max_batches_per_lock
    )
    result = worker.run()
    assert busy == [True]
    assert result.published == 2 and result.batches == 2
    assert not OutboxEvent.objects.filter(status="pending").exists()
    assert len(bus.messages()) == 2


def _close() -> None:
    from django.db import connection

    connection.close()


def test_poison_event_is_retried_with_backoff_then_parked_holding_back_only_its_aggregate(
    bus, settings, caplog, partitions
) -> None:  # type: ignore[no-untyped-def]
    bus.limit_message_size(4096)
    settings.OUTBOX_MAX_ATTEMPTS = 2
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="bio", type="string")
    poison = UserFactory(tenant=tenant, external_id="poison", attributes={"bio": "x" * 4000})
    user_services.user_update(user=poison, email="later@example.com")  # same aggregate, after the poison
    # Healthy subjects up to one in the poison's own lane: a rejected event must not stop its lane.
    healthy = [UserFactory(tenant=tenant, external_id="healthy-0")]
    while partition_of(healthy[-1].id, partitions) != partition_of(poison.id, partitions):
        healthy.append(UserFactory(tenant=tenant, external_id=f"healthy-{len(healthy)}"))
    errors_before = counter("event_bus_errors_total", kind="event")

    with caplog.at_level(logging.ERROR, logger="iam.OutboxWorker"):
        first = OutboxWorker().run()
    assert first.event_errors == 1 and not first.transport_error
    row = OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserCreated")
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > timezone.now()
    assert "failed to publish event" in caplog.text and str(row.event_id) in caplog.text
    assert counter("event_bus_errors_total", kind="event") == errors_before + 1
    # Other aggregates go on; the poison's own later event waits behind it.
    assert {OutboxEvent.objects.get(aggregate_id=user.id).status for user in healthy} == {"published"}
    assert OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserUpdated").status == "pending"

    from core.guards import domain_write  # noqa: F401 - outbox rows are not domain rows

    OutboxEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    second = OutboxWorker().run()
    assert second.parked == [str(row.event_id)]
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == 2
    assert ("maximum" if bus.kind == "nats" else "MSG_SIZE_TOO_LARGE") in row.last_error
    assert OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserUpdated").status == "pending"

    # An operator fixes the cause (here: the size limit) and retries from the console action.
    bus.limit_message_size(-1 if bus.kind == "nats" else 1_000_000)
    assert outbox_services.outbox_retry(sequences=[row.sequence]) == 1
    drain_outbox()
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"published"}
    stored = bus.messages()
    poison_events = [m.envelope["type"] for m in stored if m.envelope["aggregateid"] == str(poison.id)]
    assert poison_events == ["UserCreated", "UserUpdated"]


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_seconds(n, 30) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.fixture(params=["nats", "kafka"])
def own_bus(request, tmp_path, settings):  # type: ignore[no-untyped-def]
    """A server of this test alone (NATS, or the Kafka-compatible broker), which it may stop and start."""
    import eventbus as bus
    from core.config import event_bus_config

    if request.param == "nats":
        server = NatsServer(tmp_path / "nats")
        server.start()
        settings.EVENT_BUS = event_bus_config(server.url)
        settings.NATS_PUBLISH_TIMEOUT_SECONDS = 1.0
        settings.NATS_CONNECT_TIMEOUT_SECONDS = 1.0
        bus.reset_adapter()
    else:
        server = KafkaServer(tmp_path)
        server.start()
        use_kafka(settings, server, "outage.events")
        settings.KAFKA_PUBLISH_TIMEOUT_SECONDS = 1.0
        settings.KAFKA_CONNECT_TIMEOUT_SECONDS = 1.0
        bus.reset_adapter()
    from tests.buses import Bus

    try:
        yield Bus(request.param, server, settings)
    finally:
        bus.reset_adapter()
        server.stop()


def test_transport_outage_counts_no_attempt_and_recovers_without_restart(own_bus, caplog) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    drain_outbox()  # connected, stream or topic created
    own_bus.server.stop()
    for i in range(20):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    errors_before = counter("event_bus_errors_total", kind="transport")
    worker = OutboxWorker()
    with caplog.at_level(logging.ERROR):
        result = worker.run()
    assert result.transport_error and result.published == 0
    assert "failed to publish event" in caplog.text
    assert counter("event_bus_errors_total", kind="transport") > errors_before
    assert set(OutboxEvent.objects.filter(event_type="UserCreated").values_list("attempts", flat=True)) == {0}
    assert OutboxEvent.objects.filter(status="pending").count() == 20

    # Back on the same port (Tansu keeps topics in memory: the adapter creates the topic again).
    own_bus.server.start()
    # A bound on recovery, not a speed check: on a busy machine librdkafka's reconnect backoff and the
    # topic's re-creation can take tens of seconds; on a quiet one this loop ends within seconds.
    deadline = time.monotonic() + 120
    while OutboxEvent.objects.filter(status="pending").exists() and time.monotonic() < deadline:
        worker.run()  # the same worker and adapter: no restart of anything
        time.sleep(0.2)
    assert not OutboxEvent.objects.filter(status="pending").exists()
    created = [m.envelope for m in own_bus.messages() if m.envelope["type"] == "UserCreated"]
    assert len({e["id"] for e in created}) == 20
    if own_bus.kind == "nats":
        assert len(created) == 20
    else:  # the broker came back empty: the adapter created the topic again, as configured
        from tests.kafka_topic import topic_partitions

        assert topic_partitions(own_bus.server.bootstrap, settings.KAFKA_TOPIC) == settings.KAFKA_TOPIC_PARTITIONS


def test_crash_between_delivery_and_marking_republishes_and_consumers_dedupe(bus) -> None:  # type: ignore[no-untyped-def]
    """Killed after the bus acknowledged, before PostgreSQL marked: the next run publishes again.

    NATS drops the copies itself (``Nats-Msg-Id`` within the duplicate window). Kafka's idempotent
    producer dedupes within one producer session only: the topic holds each event twice, in order per
    aggregate, and consumers drop the second copy by its CloudEvent ``id``.
    """
    tenant = TenantFactory(slug="acme")
    for i in range(10):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    relay = subprocess.Popen(  # the relay with the real adapter, wrapped to stall once the bus acknowledged
        [sys.executable, "-m", "tests.faults", STALL_AFTER_ACK],
        cwd=Path(settings.BASE_DIR),
        env=relay_process_env(bus.relay_env()),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = read_until(relay, "acked ", timeout=60)
        assert output.endswith("acked 11\n"), output[-2000:]
        relay.send_signal(signal.SIGKILL)  # acknowledged by the bus, not yet marked in PostgreSQL
    finally:
        relay.kill()
        relay.wait(10)
        relay.stdin.close()
        relay.stdout.close()
    assert OutboxEvent.objects.filter(status="pending").count() == 11
    assert len(bus.messages()) == 11

    result = drain_outbox()
    assert result.published == 11
    stored = bus.messages()
    ids = [str(e) for e in OutboxEvent.objects.order_by("sequence").values_list("event_id", flat=True)]
    if bus.kind == "nats":
        assert result.duplicates == 11 and len(stored) == 11
    else:
        assert result.duplicates == 0 and len(stored) == 22  # Kafka cannot tell: a new producer session
        assert sorted(m.event_id for m in stored) == sorted(ids * 2)
    deduped: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in stored:  # what docs/events.md tells a consumer to do
        if message.event_id not in seen:
            seen.add(message.event_id)
            deduped.setdefault(message.envelope["aggregateid"], []).append(message.envelope["aggregateversion"])
    assert seen == set(ids) and all(versions == [1] for versions in deduped.values())


def test_relay_process_killed_in_its_lock_waiting_for_acks_loses_nothing(event_bus) -> None:  # type: ignore[no-untyped-def]
    """``manage.py relay_outbox --once`` talks to NATS through a proxy that, once the relay publishes,
    holds the server's replies: the stream stores the events while the relay waits for their
    acknowledgements inside its lock. Another relay finds the lock taken. Killed there, the relay
    loses nothing: every event is pending again, and the next run publishes each once (NATS drops
    the copies by ``Nats-Msg-Id``)."""
    tenant = TenantFactory(slug="acme")
    for i in range(10):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    bus = Bus("nats", event_bus, settings)
    with TcpProxy(event_bus.port) as proxy:
        proxy.hold_replies_after(f"HPUB {settings.NATS_SUBJECT_PREFIX}.".encode())
        env = relay_process_env(bus.relay_env())
        env.update(EVENT_BUS_URL=f"nats://127.0.0.1:{proxy.port}", NATS_PUBLISH_TIMEOUT_SECONDS="600")
        relay = subprocess.Popen(
            [sys.executable, "manage.py", "relay_outbox", "--once"],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while len(bus.messages()) < 11 and relay.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert relay.poll() is None, relay.communicate()[0].decode()[-2000:]
            assert proxy.holding.is_set() and len(bus.messages()) == 11  # stored; the relay heard nothing back
            second = OutboxWorker().run()
            assert second.busy and second.published == 0
            relay.send_signal(signal.SIGKILL)
        finally:
            relay.kill()
            relay.wait(10)
            relay.stdout.close()
    assert OutboxEvent.objects.filter(status="pending").count() == 11

    result = drain_outbox()
    assert result.published == 11 and result.duplicates == 11
    assert len(bus.messages()) == 11


def relay_process_env(bus_env: dict[str, str]) -> dict[str, str]:
    """The environment of a relay process on this test's database and bus (``bus_env``)."""
    database = settings.DATABASES["default"]
    url = f"postgres://{database['USER']}@/{database['NAME']}?host={database['HOST']}"
    if database.get("PORT"):
        url = f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return {**os.environ, "IAM_ENV": "development", "DATABASE_URL": url, **bus_env}


def test_purge_deletes_published_rows_past_retention_only(event_bus) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme")
    TenantFactory(slug="beta")
    drain_outbox()
    old = OutboxEvent.objects.order_by("sequence").first()
    long_ago = timezone.now() - timedelta(hours=200)
    OutboxEvent.objects.filter(pk=old.pk).update(created_at=long_ago, published_at=long_ago)
    TenantFactory(slug="pending-one")
    assert outbox_retention.outbox_purge_published(older_than_hours=168) == 1
    assert OutboxEvent.objects.count() == 2 and OutboxEvent.objects.filter(status="pending").count() == 1
