"""Retention of the outbox: published rows are deleted after ``OUTBOX_RETENTION_HOURS`` (beat, hourly)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from outbox.models import OutboxEvent


def outbox_purge_published(*, older_than_hours: int | None = None, batch_size: int = 5000) -> int:
    """Delete published rows past the retention period, in bounded batches."""
    hours = settings.OUTBOX_RETENTION_HOURS if older_than_hours is None else older_than_hours
    cutoff = timezone.now() - timedelta(hours=hours)
    deleted = 0
    while True:
        ids = list(
            # A row is written before it is published: ``created_at`` bounds the scan to the btree on it.
            OutboxEvent.objects.filter(
                status=OutboxEvent.Status.PUBLISHED, published_at__lt=cutoff, created_at__lt=cutoff
            ).values_list("sequence", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        deleted += OutboxEvent.objects.filter(sequence__in=ids).delete()[0]
