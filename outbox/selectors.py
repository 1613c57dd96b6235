"""Reads of the outbox: the figures behind ``outbox_pending_count`` and ``outbox_status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection

from outbox.models import OutboxEvent, QueuedEvent
from outbox.partitions import PartitionBacklog, backlog_by_partition, idle_partitions_with_pending

STATS = f"""
    WITH queued AS (
        SELECT
            count(*) FILTER (WHERE status = 'pending') AS pending,
            count(*) FILTER (WHERE status = 'failed') AS failed,
            min(created_at) FILTER (WHERE status = 'pending') AS oldest
        FROM {QueuedEvent._meta.db_table}
    ), published AS (
        SELECT count(*) AS published, max(published_at) AS last
        FROM {OutboxEvent._meta.db_table} WHERE status = 'published'
    )
    SELECT pending, failed, published, oldest, last, extract(epoch FROM now() - oldest) FROM queued, published
"""


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    failed: int
    published: int
    oldest_pending_at: datetime | None
    last_published_at: datetime | None
    oldest_pending_age_seconds: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("oldest_pending_at", "last_published_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def outbox_stats() -> OutboxStats:
    with connection.cursor() as cursor:
        cursor.execute(STATS)
        pending, failed, published, oldest, last, age = cursor.fetchone()
    return OutboxStats(pending, failed, published, oldest, last, float(age or 0.0))


PUBLISHED_PER_MINUTE = f"""
    SELECT floor(extract(epoch FROM now() - published_at) / 60)::int, count(*)
    FROM {OutboxEvent._meta.db_table}
    WHERE status = 'published' AND published_at > now() - make_interval(mins => %s)
    GROUP BY 1
"""


def published_per_minute(*, minutes: int = 60) -> list[int]:
    """Events published in each of the last ``minutes`` minutes, oldest first (the last is the current
    minute). Reads the BRIN index on ``published_at``; published rows are kept for retention."""
    counts = [0] * minutes
    with connection.cursor() as cursor:
        cursor.execute(PUBLISHED_PER_MINUTE, [minutes])
        for minutes_ago, count in cursor.fetchall():
            if 0 <= minutes_ago < minutes:
                counts[minutes - 1 - minutes_ago] = count
    return counts


def outbox_backlog_by_partition() -> list[PartitionBacklog]:
    """Pending rows and the oldest one's age per relay partition (``outbox_partition_*`` on /metrics)."""
    with connection.cursor() as cursor:
        return backlog_by_partition(cursor, settings.OUTBOX_PARTITIONS)


def relay_runs_wanted() -> int:
    """How many relay runs would find work now: one per idle partition holding pending rows, at least
    one (the run asking), at most ``OUTBOX_RELAY_CONCURRENCY``. No query with one partition."""
    count: int = settings.OUTBOX_PARTITIONS
    limit: int = settings.OUTBOX_RELAY_CONCURRENCY
    if count == 1 or limit == 1:
        return 1
    with connection.cursor() as cursor:
        return max(1, min(limit, idle_partitions_with_pending(cursor, count)))
