"""The relay's queue (``QueuedEvent``): kept true by the database for every writer of the outbox, and
the reason marking a batch published is a HOT update of the outbox rows (migration 0004)."""

from __future__ import annotations

import pytest
from django.db import connection

from outbox import retention as outbox_retention
from outbox import services as outbox_services
from outbox.models import OutboxEvent, QueuedEvent
from outbox.relay import MARK_PUBLISHED
from tests.factories import TenantFactory
from tests.html_support import page
from tests.outbox_helpers import drain_outbox

pytestmark = [pytest.mark.django_db(transaction=True)]


def queue() -> dict[int, str]:
    """sequence → status of every queue row."""
    return dict(QueuedEvent.objects.values_list("event_id", "status"))


def unpublished() -> dict[int, str]:
    """sequence → status of every outbox row that is not published: what the queue must hold."""
    return dict(OutboxEvent.objects.exclude(status="published").values_list("sequence", "status"))


def test_the_queue_follows_each_event_through_its_life() -> None:
    TenantFactory(slug="acme")  # written through the funnel
    (event,) = OutboxEvent.objects.all()
    assert queue() == {event.sequence: "pending"}
    row = QueuedEvent.objects.get(event_id=event.sequence)
    assert (row.partition_count, row.partition, row.aggregate_id, row.created_at) == (
        event.partition_count,
        event.partition,
        event.aggregate_id,
        event.created_at,
    )

    OutboxEvent.objects.filter(pk=event.pk).update(status="failed", attempts=5, next_attempt_at=None)
    assert queue() == {event.sequence: "failed"}  # parked: still unpublished, holding its aggregate back
    assert outbox_services.outbox_retry(sequences=[event.sequence]) == 1
    assert queue() == {event.sequence: "pending"}

    OutboxEvent.objects.filter(pk=event.pk).update(status="published")
    assert queue() == {}
    assert outbox_services.outbox_requeue(sequences=[event.sequence]) == 1
    assert queue() == {event.sequence: "pending"}

    OutboxEvent.objects.filter(pk=event.pk).delete()
    assert queue() == {}


def test_every_writer_keeps_the_queue_true() -> None:
    """The funnel, ``bulk_create``, SQL by hand, a multi-row UPDATE and a DELETE: the queue always holds
    exactly the unpublished rows (the triggers are the queue's only writers)."""
    TenantFactory(slug="acme")
    TenantFactory(slug="beta")
    template = OutboxEvent.objects.first()
    assert template is not None
    fields = {f.attname: getattr(template, f.attname) for f in OutboxEvent._meta.concrete_fields}
    for name in ("sequence", "event_id", "created_at", "published_at"):
        fields.pop(name)
    OutboxEvent.objects.bulk_create([OutboxEvent(**{**fields, "status": status}) for status in ("pending", "failed")])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OutboxEvent._meta.db_table} (event_id, event_type, aggregate_type, aggregate_id, "
            "aggregate_version, tenant_id, subject, payload, status, attempts, last_error, partition, "
            "partition_count, created_at, published_at) "
            "SELECT gen_random_uuid(), event_type, aggregate_type, aggregate_id, aggregate_version, tenant_id, "
            "subject, payload, s, 0, '', partition, partition_count, now(), NULL "
            f"FROM {OutboxEvent._meta.db_table}, unnest(ARRAY['pending', 'published']) AS s WHERE sequence = %s",
            [template.sequence],
        )
    assert queue() == unpublished() and len(queue()) == 5
    OutboxEvent.objects.filter(status="failed").update(status="pending")
    assert queue() == unpublished() and set(queue().values()) == {"pending"}
    OutboxEvent.objects.filter(sequence__in=list(queue())[:2]).delete()
    assert queue() == unpublished() and len(queue()) == 3
    drain_outbox_without_bus()
    assert queue() == unpublished() == {}
    TenantFactory(slug="gamma")
    with connection.cursor() as cursor:  # an operator emptying the outbox by hand
        cursor.execute(f"TRUNCATE {OutboxEvent._meta.db_table}")
    assert queue() == unpublished() == {}


def drain_outbox_without_bus() -> None:
    """Mark every pending row published the way the relay does (its one UPDATE), without a bus."""
    with connection.cursor() as cursor:
        cursor.execute(MARK_PUBLISHED, [list(queue())])


@pytest.mark.nats
def test_marking_published_is_a_hot_update(event_bus) -> None:  # type: ignore[no-untyped-def]
    """No index of the outbox covers what the relay changes (but a BRIN, which PostgreSQL 16 keeps in a
    HOT update), and its pages keep room: every published row is rewritten in place, no index entry."""
    for index in range(30):
        TenantFactory(slug=f"t{index}")
    before = table_updates()
    result = drain_outbox()
    assert result.published == 30
    updates, hot = (now - then for now, then in zip(table_updates(), before, strict=True))
    assert updates == 30 and hot == 30, (updates, hot)
    assert queue() == {}


def table_updates() -> tuple[int, int]:
    """(updates, HOT updates) of the outbox table so far, this backend's counts included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s",
            [OutboxEvent._meta.db_table],
        )
        updates, hot = cursor.fetchone()
    return updates, hot


def test_retention_deletes_nothing_the_queue_holds() -> None:
    TenantFactory(slug="acme")
    assert outbox_retention.outbox_purge_published(older_than_hours=0) == 0
    assert len(queue()) == 1 and queue() == unpublished()


def test_the_consoles_status_filter_reads_the_queue(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    """The dashboard's "Outbox pending" and "Outbox failed" links (``status__exact``) list the same rows
    as the status column says, found through the queue."""
    for slug in ("a", "b", "c", "d"):
        TenantFactory(slug=slug)
    sequences = sorted(OutboxEvent.objects.values_list("sequence", flat=True))
    OutboxEvent.objects.filter(sequence=sequences[0]).update(status="failed", attempts=5)
    OutboxEvent.objects.filter(sequence__in=sequences[1:3]).update(status="published")

    def listed(status: str) -> list[int]:
        response = admin_client_logged_in.get(f"/admin/outbox/outboxevent/?status__exact={status}")
        assert response.status_code == 200
        html = page(response.content.decode())
        return sorted(int(a.text.strip()) for a in html.select("#result_list th.field-sequence a"))

    assert listed("failed") == [sequences[0]]
    assert listed("pending") == [sequences[3]]
    assert listed("published") == sequences[1:3]
