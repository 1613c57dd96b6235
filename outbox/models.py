"""The transactional outbox: one row per domain event, written in the transaction of its change."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import BrinIndex
from django.db import models


class OutboxEvent(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        FAILED = "failed", "Failed (parked)"

    sequence = models.BigAutoField(primary_key=True, help_text="The relay's order.")
    event_id = models.UUIDField(
        unique=True, default=uuid.uuid4, editable=False, help_text="CloudEvent id = Nats-Msg-Id."
    )
    event_type = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.UUIDField()
    aggregate_version = models.PositiveBigIntegerField()
    tenant_id = models.UUIDField()
    subject = models.CharField(max_length=255, help_text="NATS subject.")
    payload = models.JSONField(help_text="The CloudEvents 1.0 envelope, as published.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # The relay's lane (docs/scaling.md): crc32(aggregate id) mod ``partition_count``, the value of
    # OUTBOX_PARTITIONS the writer had. Both have a database default, so adding them to a big table
    # rewrites nothing (PostgreSQL 11+), and a row written by an older release lands in lane (1, 0).
    partition = models.SmallIntegerField(default=0, db_default=0)
    partition_count = models.SmallIntegerField(default=1, db_default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sequence"]
        # No index of this table covers a column the relay changes (status, published_at, attempts,
        # next_attempt_at, last_error) except the BRIN below, which PostgreSQL 16+ keeps up in a HOT
        # update: marking an event published rewrites its row on its own page and no index entry.
        # The pending events are found through QueuedEvent instead.
        indexes = [
            # Retention and the published-per-minute figures. A summarizing index: rows are published
            # in about the order they are written, so block ranges stay narrow.
            BrinIndex(fields=["published_at"], name="outbox_published_at_brin", autosummarize=True),
            models.Index(fields=["aggregate_id", "sequence"], name="outbox_aggregate_sequence"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type} {self.aggregate_type} {str(self.aggregate_id)[:8]} v{self.aggregate_version}"


class QueuedEvent(models.Model):
    """An event not yet published (pending, backing off or parked): the relay's queue.

    One narrow row per unpublished outbox row, kept by the database itself: triggers on the outbox
    table (migration 0004) add the row when an event is written unpublished, follow its status and
    backoff, and delete it when the event is published or deleted — whoever writes the event (the
    funnel, COPY, the ORM, an operator's SQL). The relay polls this table and joins the event for its
    payload, so marking a batch published deletes narrow queue rows and updates event rows in place.
    Read it; never write it (the triggers are its only writers).
    """

    event = models.OneToOneField(
        OutboxEvent,
        primary_key=True,
        db_column="sequence",
        db_constraint=False,  # the delete trigger keeps the pair; no per-row foreign-key check
        on_delete=models.DO_NOTHING,
        related_name="queued",
    )
    partition_count = models.SmallIntegerField()
    partition = models.SmallIntegerField()
    aggregate_id = models.UUIDField()
    status = models.CharField(max_length=16, choices=OutboxEvent.Status.choices)
    next_attempt_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["event"]
        indexes = [
            # The relay's poll per lane: "pending, of this layout and partition, by sequence".
            models.Index(
                fields=["partition_count", "partition", "event"],
                name="outbox_queue_lane",
                condition=models.Q(status="pending"),
            ),
            # The few rows that hold their aggregate back (parked, or backing off).
            models.Index(
                fields=["aggregate_id", "event"],
                name="outbox_queue_blocking",
                condition=models.Q(status="failed") | models.Q(next_attempt_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.status} lane {self.partition}/{self.partition_count}"
