"""Writing outbox rows. Called by the domain services inside their transaction, never alone."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.db.copy import copy_insert
from outbox.events import EVENT_TYPES, AggregateEvent, envelope, subject_for
from outbox.models import OutboxEvent
from outbox.partitions import partition_of

logger = logging.getLogger(__name__)


class OutboxOutsideTransaction(RuntimeError):
    """An event was recorded outside a transaction: it could commit without its change."""


def event_build(occurred: AggregateEvent, *, replay_of: UUID | None = None) -> OutboxEvent:
    """An unsaved outbox row for a registered event type, with its CloudEvents envelope."""
    event = EVENT_TYPES.get(occurred.event_type)
    if event is None:
        raise KeyError(f"unregistered event type {occurred.event_type!r}")
    event_id = uuid.uuid4()
    count = settings.OUTBOX_PARTITIONS
    return OutboxEvent(
        event_id=event_id,
        event_type=event.name,
        aggregate_type=event.aggregate_type,
        aggregate_id=occurred.aggregate_id,
        aggregate_version=occurred.aggregate_version,
        tenant_id=occurred.tenant_id,
        partition=partition_of(occurred.aggregate_id, count),
        partition_count=count,
        subject=subject_for(settings.NATS_SUBJECT_PREFIX, occurred.tenant_id, event),
        payload=envelope(
            event_id=event_id,
            event=event,
            source=settings.IAM_EVENT_SOURCE,
            time=timezone.now(),
            tenant_id=occurred.tenant_id,
            aggregate_id=occurred.aggregate_id,
            aggregate_version=occurred.aggregate_version,
            data=occurred.data,
            replay_of=replay_of,
        ),
    )


def event_record(occurred: AggregateEvent) -> OutboxEvent:
    """Insert one outbox row for a domain event; the relay is poked when the transaction commits."""
    return events_record([event_build(occurred)])[0]


def events_record(rows: list[OutboxEvent]) -> list[OutboxEvent]:
    """Insert outbox rows built by :func:`event_build` (one statement), in the caller's transaction."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise OutboxOutsideTransaction(f"{rows[0].event_type} recorded outside transaction.atomic()")
    if len(rows) == 1:
        rows[0].save(force_insert=True)
    else:
        now = timezone.now()
        for row in rows:
            row.created_at = now
        copy_insert(OutboxEvent, rows)
    if not any(callback is poke_relay for _, callback, _ in connection.run_on_commit):
        transaction.on_commit(poke_relay, robust=True)
    return rows


def poke_relay() -> None:
    """Ask a worker to relay now. Best effort: beat relays anyway if the broker is unreachable."""
    from outbox.tasks import relay_outbox_task

    try:
        relay_outbox_task.apply_async(expires=max(settings.OUTBOX_RELAY_INTERVAL * 5, 5), retry=False)
    except Exception as exc:  # noqa: BLE001 - a broker outage must never fail a committed write
        logger.warning("could not poke the outbox relay; beat will relay", extra={"error": str(exc)})


def outbox_retry(*, sequences: list[int]) -> int:
    """Make parked (failed) events due again with a fresh attempt budget."""
    return OutboxEvent.objects.filter(sequence__in=sequences, status=OutboxEvent.Status.FAILED).update(
        status=OutboxEvent.Status.PENDING, attempts=0, next_attempt_at=None
    )


def outbox_requeue(*, sequences: list[int]) -> int:
    """Publish already-published events again (same ids: JetStream drops them inside its duplicate window)."""
    return (
        OutboxEvent.objects.filter(sequence__in=sequences)
        .exclude(status=OutboxEvent.Status.PENDING)
        .update(status=OutboxEvent.Status.PENDING, attempts=0, next_attempt_at=None, published_at=None)
    )


def outbox_replay(
    *,
    tenant_id: UUID | None = None,
    event_types: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    from_sequence: int | None = None,
    to_sequence: int | None = None,
    dry_run: bool = False,
) -> int:
    """Queue copies of past events for publishing again, to rebuild a downstream consumer.

    Each copy gets a new event id (so JetStream's duplicate window does not drop it), the same
    ``aggregateversion``, and ``replayof`` naming the original: consumers that apply by version
    stay correct. Only rows still in the outbox (``OUTBOX_RETENTION_HOURS``) can be replayed.
    """
    rows = OutboxEvent.objects.exclude(status=OutboxEvent.Status.FAILED).order_by("sequence")
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    if event_types:
        unknown = sorted(set(event_types) - set(EVENT_TYPES))
        if unknown:
            raise KeyError(f"unknown event types: {', '.join(unknown)}")
        rows = rows.filter(event_type__in=event_types)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if from_sequence is not None:
        rows = rows.filter(sequence__gte=from_sequence)
    if to_sequence is not None:
        rows = rows.filter(sequence__lte=to_sequence)
    if dry_run:
        return rows.count()
    copied = 0
    with transaction.atomic():
        batch: list[OutboxEvent] = []
        for original in rows.iterator(chunk_size=2000):
            occurred = AggregateEvent(
                original.event_type,
                original.tenant_id,
                original.aggregate_id,
                original.aggregate_version,
                original.payload.get("data", {}),
            )
            copy = event_build(occurred, replay_of=original.event_id)
            batch.append(copy)
            if len(batch) >= 2000:
                copied += len(events_record(batch))
                batch = []
        if batch:
            copied += len(events_record(batch))
    return copied
