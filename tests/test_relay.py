"""The relay against a real NATS JetStream server started by the fixtures."""

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

from outbox import services as outbox_services
from outbox.models import OutboxEvent
from outbox.relay import OutboxWorker, backoff_seconds
from tests.conftest import NatsServer
from tests.factories import DefinitionFactory, TenantFactory, UserFactory
from tests.jetstream import stream_messages
from tests.outbox_helpers import drain_outbox
from users import services as user_services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.nats]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_relay_publishes_every_event_once_in_order(event_bus) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="level", type="integer")
    users = [UserFactory(tenant=tenant, external_id=f"u{i}") for i in range(5)]
    user_services.user_update(user=users[0], attributes={"level": 1})
    user_services.user_delete(user=users[1])
    result = drain_outbox()
    assert result.published == 9 and result.duplicates == 0
    assert not OutboxEvent.objects.filter(status="pending").exists()
    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    rows = list(OutboxEvent.objects.order_by("sequence"))
    assert [m.msg_id for m in stored] == [str(r.event_id) for r in rows]
    assert [m.envelope["id"] for m in stored] == [m.msg_id for m in stored]
    assert [m.subject for m in stored] == [r.subject for r in rows]
    assert stored[0].subject == f"{settings.NATS_SUBJECT_PREFIX}.{tenant.id}.tenant.TenantCreated"
    versions = [m.envelope["aggregateversion"] for m in stored if m.envelope["aggregateid"] == str(users[0].id)]
    assert versions == [1, 2]


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


def test_second_relay_returns_busy_while_the_first_holds_the_lock(event_bus) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for i in range(3):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    outcome: dict = {}

    def second_relay() -> None:
        from django.db import connection

        try:
            started = time.monotonic()
            outcome["result"] = OutboxWorker().run()
            outcome["seconds"] = time.monotonic() - started
        finally:
            connection.close()

    def while_locked() -> None:
        thread = threading.Thread(target=second_relay)
        thread.start()
        thread.join(10)

    first = OutboxWorker(on_locked=while_locked).run()
    assert outcome["result"].busy and outcome["result"].published == 0
    # Returned without waiting for the lock: waiting would last until the first relay lets go, which is
    # after this thread's join (10 s). Far from both, so a slow machine cannot blur them.
    assert outcome["seconds"] < 5.0
    assert first.published == 4
    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    assert len(stored) == 4 and len({m.msg_id for m in stored}) == 4


def test_rows_committed_while_the_lock_is_held_are_relayed_before_letting_go(event_bus) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    calls = []

    def commit_more() -> None:
        if not calls:
            calls.append(1)
            thread = threading.Thread(target=lambda: (UserFactory(tenant=tenant, external_id="late"), _close()))
            thread.start()
            thread.join(10)

    result = OutboxWorker(on_locked=commit_more).run()
    assert result.published == 2
    assert not OutboxEvent.objects.filter(status="pending").exists()


def _close() -> None:
    from django.db import connection

    connection.close()


def test_poison_event_is_retried_with_backoff_then_parked_holding_back_only_its_aggregate(
    event_bus, settings, caplog
) -> None:  # type: ignore[no-untyped-def]
    from outbox import event_bus as bus

    settings.NATS_STREAM_MAX_MSG_SIZE = 4096
    settings.OUTBOX_MAX_ATTEMPTS = 2
    bus.reset_adapter()
    tenant = TenantFactory(slug="acme")
    DefinitionFactory(tenant=tenant, key="bio", type="string")
    poison = UserFactory(tenant=tenant, external_id="poison", attributes={"bio": "x" * 4000})
    user_services.user_update(user=poison, email="later@example.com")  # same aggregate, after the poison
    healthy = UserFactory(tenant=tenant, external_id="healthy")
    errors_before = counter("event_bus_errors_total", kind="event")

    with caplog.at_level(logging.ERROR, logger="iam.OutboxWorker"):
        first = OutboxWorker().run()
    assert first.event_errors == 1 and not first.transport_error
    row = OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserCreated")
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > timezone.now()
    assert "failed to publish event" in caplog.text and str(row.event_id) in caplog.text
    assert counter("event_bus_errors_total", kind="event") == errors_before + 1
    # Other aggregates go on; the poison's own later event waits behind it.
    assert OutboxEvent.objects.get(aggregate_id=healthy.id).status == "published"
    assert OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserUpdated").status == "pending"

    from iam_project.guards import domain_write  # noqa: F401 - outbox rows are not domain rows

    OutboxEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    second = OutboxWorker().run()
    assert second.parked == [str(row.event_id)]
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == 2 and "maximum" in row.last_error.lower()
    assert OutboxEvent.objects.get(aggregate_id=poison.id, event_type="UserUpdated").status == "pending"

    # An operator fixes the cause (here: the stream's limit) and retries from the console action.
    settings.NATS_STREAM_MAX_MSG_SIZE = -1
    bus.reset_adapter()
    assert outbox_services.outbox_retry(sequences=[row.sequence]) == 1
    drain_outbox()
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"published"}
    stored = stream_messages(event_bus.url, settings.NATS_STREAM_NAME)
    poison_events = [m.envelope["type"] for m in stored if m.envelope["aggregateid"] == str(poison.id)]
    assert poison_events == ["UserCreated", "UserUpdated"]


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_seconds(n, 30) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.fixture
def own_nats(tmp_path, settings):  # type: ignore[no-untyped-def]
    """A NATS server of this test alone, which it may stop and start."""
    from iam_project.config import event_bus_config
    from outbox import event_bus as bus

    server = NatsServer(tmp_path / "nats")
    server.start()
    settings.EVENT_BUS = event_bus_config(server.url)
    settings.NATS_PUBLISH_TIMEOUT_SECONDS = 1.0
    settings.NATS_CONNECT_TIMEOUT_SECONDS = 1.0
    bus.reset_adapter()
    yield server
    bus.reset_adapter()
    server.stop()


def test_transport_outage_counts_no_attempt_and_recovers_without_restart(own_nats, caplog) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    drain_outbox()  # connected, stream created
    own_nats.stop()
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

    own_nats.start()
    deadline = time.monotonic() + 20
    while OutboxEvent.objects.filter(status="pending").exists() and time.monotonic() < deadline:
        worker.run()  # the same worker and adapter: no restart of anything
        time.sleep(0.2)
    assert not OutboxEvent.objects.filter(status="pending").exists()
    stored = stream_messages(own_nats.url, settings.NATS_STREAM_NAME)
    assert sum(m.envelope["type"] == "UserCreated" for m in stored) == 20


def test_crash_between_puback_and_marking_republishes_as_duplicate(event_bus, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tenant = TenantFactory(slug="acme")
    for i in range(10):
        UserFactory(tenant=tenant, external_id=f"u{i}")
    database = settings.DATABASES["default"]
    flag = tmp_path / "acked"
    env = {
        **os.environ,
        "IAM_ENV": "development",
        "DATABASE_URL": f"postgres://{database['USER']}@/{database['NAME']}?host={database['HOST']}",
        "EVENT_BUS_URL": event_bus.url,
        "NATS_STREAM_NAME": settings.NATS_STREAM_NAME,
        "NATS_SUBJECT_PREFIX": settings.NATS_SUBJECT_PREFIX,
        "OUTBOX_RELAY_TEST_HOOK": f"acked:{flag}",
    }
    if database.get("PORT"):
        env["DATABASE_URL"] = (
            f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        )
    relay = subprocess.Popen(
        [sys.executable, "manage.py", "relay_outbox", "--once"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not flag.exists() and relay.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), relay.communicate()[0].decode()[-2000:]
    relay.send_signal(signal.SIGKILL)  # acked by JetStream, not yet marked in PostgreSQL
    relay.wait(10)
    assert OutboxEvent.objects.filter(status="pending").count() == 11
    assert len(stream_messages(event_bus.url, settings.NATS_STREAM_NAME)) == 11

    result = drain_outbox()
    assert result.published == 11 and result.duplicates == 11
    assert len(stream_messages(event_bus.url, settings.NATS_STREAM_NAME)) == 11


def test_purge_deletes_published_rows_past_retention_only(event_bus) -> None:  # type: ignore[no-untyped-def]
    TenantFactory(slug="acme")
    TenantFactory(slug="beta")
    drain_outbox()
    old = OutboxEvent.objects.order_by("sequence").first()
    OutboxEvent.objects.filter(pk=old.pk).update(published_at=timezone.now() - timedelta(hours=200))
    TenantFactory(slug="pending-one")
    assert outbox_services.outbox_purge_published(older_than_hours=168) == 1
    assert OutboxEvent.objects.count() == 2 and OutboxEvent.objects.filter(status="pending").count() == 1
