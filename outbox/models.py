"""The transactional outbox: one row per domain event, written in the transaction of its change."""

from __future__ import annotations

import uuid

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
        indexes = [
            models.Index(
                fields=["sequence"],
                name="outbox_pending_by_sequence",
                condition=models.Q(status="pending"),
            ),
            # The relay's poll per lane: "pending, of this layout and partition, by sequence".
            models.Index(
                fields=["partition_count", "partition", "sequence"],
                name="outbox_pending_by_partition",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["published_at"],
                name="outbox_published_at",
                condition=models.Q(status="published"),
            ),
            models.Index(fields=["aggregate_id", "sequence"], name="outbox_aggregate_sequence"),
            # The few rows that hold their aggregate back (parked, or backing off): the relay asks
            # for them on every batch, and must not scan the published rows kept for retention.
            models.Index(
                fields=["aggregate_id", "sequence"],
                name="outbox_blocking",
                condition=models.Q(status="failed") | models.Q(status="pending", next_attempt_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type} {self.aggregate_type} {str(self.aggregate_id)[:8]} v{self.aggregate_version}"
