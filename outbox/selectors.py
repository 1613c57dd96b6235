"""Reads of the outbox: the figures behind ``outbox_pending_count`` and ``outbox_status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection

from outbox.models import OutboxEvent

STATS = f"""
    SELECT
        count(*) FILTER (WHERE status = 'pending'),
        count(*) FILTER (WHERE status = 'failed'),
        count(*) FILTER (WHERE status = 'published'),
        min(created_at) FILTER (WHERE status = 'pending'),
        max(published_at) FILTER (WHERE status = 'published'),
        extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))
    FROM {OutboxEvent._meta.db_table}
"""


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    failed: int
    published: int
    oldest_pending_at: datetime | None
    last_published_at: datetime | None
    oldest_pending_age_seconds: float

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("oldest_pending_at", "last_published_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def outbox_stats() -> OutboxStats:
    with connection.cursor() as cursor:
        cursor.execute(STATS)
        pending, failed, published, oldest, last, age = cursor.fetchone()
    return OutboxStats(pending, failed, published, oldest, last, float(age or 0.0))
