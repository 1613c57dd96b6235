"""The OutboxWorker: relays committed outbox rows to the event bus, in sequence order.

One relay publishes at a time: each batch runs in a transaction holding
``pg_try_advisory_xact_lock`` (safe behind PgBouncer in transaction mode); a second relay finds the
lock taken and returns "busy" at once. The batch transaction is the one place where a transaction
spans network I/O, bounded by the publish timeout (docs/adr/0002-relay-lock.md). After letting the
lock go the holder looks for due rows once more, so a poke that found the lock taken is never lost.

Rows are polled by "pending, ordered by sequence", never by a remembered high-water mark. A batch
is published pipelined; the acknowledged prefix is marked published. A transport failure (bus
down, timeout) counts no attempt against the events; an error that belongs to one event counts an
attempt, backs that event off exponentially and parks it as failed after ``OUTBOX_MAX_ATTEMPTS``,
holding back only the later events of its own aggregate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from core import metrics
from core.db import tokens
from core.db.tokens import lsn_value
from eventbus import get_adapter
from eventbus.base import BatchResult, EventBusAdapter, Message
from outbox.models import OutboxEvent

logger = logging.getLogger("iam.OutboxWorker")

LOCK_KEY = 0x1A4_0B0C  # pg advisory lock key of the relay
TABLE = OutboxEvent._meta.db_table

_DUE = "status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())"
_BLOCKED = "(status = 'failed' OR (status = 'pending' AND next_attempt_at > now()))"
# The WAL insert position, read with the batch: past the commit of every row the batch sees, so it
# is each event's consistency token (``consistencytoken``: read at least this fresh, docs/events.md).
WAL_POSITION = "pg_current_wal_insert_lsn()::text"
SELECT_BATCH = f"""
    SELECT sequence, event_id::text, event_type, subject, payload::text, attempts, aggregate_id, {WAL_POSITION}
    FROM {TABLE} WHERE {_DUE} AND sequence > %s ORDER BY sequence LIMIT %s
"""
# Used only while some event is parked or backing off: skip the later events of its aggregate.
SELECT_BATCH_HOLDING_BACK = f"""
    SELECT o.sequence, o.event_id::text, o.event_type, o.subject, o.payload::text, o.attempts, o.aggregate_id,
           {WAL_POSITION}
    FROM {TABLE} o
    WHERE o.status = 'pending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
      AND NOT EXISTS (
        SELECT 1 FROM {TABLE} b
        WHERE b.aggregate_id = o.aggregate_id AND b.sequence < o.sequence
          AND (b.status = 'failed' OR (b.status = 'pending' AND b.next_attempt_at > now()))
      )
      AND o.sequence > %s
    ORDER BY o.sequence LIMIT %s
"""
ANY_BLOCKED = f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE {_BLOCKED})"
ANY_DUE = (
    f"SELECT EXISTS ({SELECT_BATCH_HOLDING_BACK.replace('o.sequence > %s', 'true').replace('LIMIT %s', 'LIMIT 1')})"
)
MARK_PUBLISHED = f"""
    UPDATE {TABLE} SET status = 'published', published_at = now(), last_error = ''
    WHERE sequence = ANY(%s) AND status = 'pending'
"""


@dataclass
class RelayResult:
    busy: bool = False
    published: int = 0
    duplicates: int = 0
    batches: int = 0
    transport_error: str = ""
    event_errors: int = 0
    parked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "busy": self.busy,
            "published": self.published,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "transport_error": self.transport_error,
            "event_errors": self.event_errors,
            "parked": self.parked,
        }


def _messages(rows: list[tuple]) -> list[Message]:
    return [
        Message(event_id=row[1], subject=row[3], payload=with_token(row[4], row[7]), key=str(row[6])) for row in rows
    ]


def with_token(payload: str, lsn: str) -> bytes:
    """The stored envelope (a JSON object's text) with the ``consistencytoken`` extension attribute."""
    return ('{"consistencytoken":"' + tokens.issue(lsn_value(lsn)) + '",' + payload.lstrip()[1:]).encode()


def one_per_aggregate(rows: list[tuple]) -> list[tuple]:
    """The batch's prefix in which no aggregate appears twice.

    Publishing is pipelined: if an aggregate's first event were rejected while its second one in the
    same batch was accepted, JetStream would hold version 2 before version 1. One event per aggregate
    per batch keeps per-aggregate order whatever fails.
    """
    seen: set = set()
    for index, row in enumerate(rows):
        if row[6] in seen:
            return rows[:index]
        seen.add(row[6])
    return rows


def backoff_seconds(attempts: int, cap: float) -> float:
    """Capped exponential backoff for an event's ``attempts``-th failure: 1, 2, 4 … ``cap`` s."""
    return float(min(cap, 2 ** max(attempts - 1, 0)))


class OutboxWorker:
    """Relays outbox rows through an :class:`EventBusAdapter`. ``run()`` is one relay run."""

    def __init__(
        self,
        adapter: EventBusAdapter | None = None,
        *,
        batch_size: int | None = None,
        max_batches_per_lock: int = 20,
    ) -> None:
        self.adapter = adapter or get_adapter()
        self.batch_size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
        self.max_batches_per_lock = max_batches_per_lock

    def run(self, *, max_rounds: int = 100) -> RelayResult:
        result = RelayResult()
        for _ in range(max_rounds):
            seen, published = self._locked_round(result)
            if result.busy:
                return result  # another relay holds the lock and re-checks before it lets go
            if result.transport_error or (seen and not published):
                break  # the bus is down or the next event is failing: back off
            if not self._any_due():  # the lock is released: one more look for rows committed meanwhile
                break
        if not result.transport_error:
            metrics.RELAY_LAST_SUCCESS.set(time.time())
        return result

    def _any_due(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(ANY_DUE)
            return bool(cursor.fetchone()[0])

    def _locked_round(self, result: RelayResult) -> tuple[int, int]:
        """Publish batches while holding the lock; returns (rows seen, rows published)."""
        seen = published_total = 0
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
            if not cursor.fetchone()[0]:
                result.busy = True
                return 0, 0
            # Pending rows are often not in the table's statistics yet (a burst, an outage): without
            # this the planner sorts every pending row instead of walking the partial index in order.
            cursor.execute("SET LOCAL enable_sort = off")
            # Batch N+1 is selected once batch N is fully acknowledged, and published while batch N is
            # being marked: the database work overlaps the next round trip to NATS, and a batch never
            # starts before every event of the previous one is in the stream (per-aggregate order).
            rows = self._select(cursor, after=0)
            outcome = self.adapter.publish_batch(_messages(rows)) if rows else None
            for number in range(self.max_batches_per_lock):
                if not rows or outcome is None:
                    break
                result.batches += 1
                seen += len(rows)
                failed = outcome.error is not None
                next_rows = (
                    [] if failed or number + 1 == self.max_batches_per_lock else self._select(cursor, rows[-1][0])
                )
                handle = self.adapter.publish_batch_start(_messages(next_rows)) if next_rows else None
                published = self._settle(cursor, rows, outcome, result)
                published_total += published
                if failed or published < len(rows):
                    if handle is not None:  # not reached: a failed batch starts no next one
                        self.adapter.publish_batch_result(handle)
                    break
                rows = next_rows
                outcome = self.adapter.publish_batch_result(handle) if handle is not None else None
        return seen, published_total

    def _select(self, cursor: CursorWrapper, after: int) -> list[tuple[Any, ...]]:
        cursor.execute(ANY_BLOCKED)
        query = SELECT_BATCH_HOLDING_BACK if cursor.fetchone()[0] else SELECT_BATCH
        cursor.execute(query, [after, self.batch_size])
        return one_per_aggregate(cursor.fetchall())

    def _settle(
        self, cursor: CursorWrapper, rows: list[tuple[Any, ...]], outcome: BatchResult, result: RelayResult
    ) -> int:
        """Mark the acknowledged prefix published; count, log and back off the failure if any."""
        acked = [row[0] for row in rows[: outcome.acked]]
        acked += [rows[index][0] for index in outcome.acked_after_failure]
        if acked:
            cursor.execute(MARK_PUBLISHED, [acked])
        result.published += len(acked)
        result.duplicates += outcome.duplicates
        metrics.RELAY_PUBLISHED.inc(len(acked))
        if outcome.error is None:
            return len(acked)
        failed = rows[outcome.acked]
        sequence, event_id, event_type, _, _, attempts, _, _ = failed
        error_text = f"{type(outcome.error).__name__}: {outcome.error}".strip()
        if outcome.per_event:
            result.event_errors += 1
            metrics.EVENT_BUS_ERRORS.labels(kind="event").inc()
            attempts += 1
            parked = attempts >= settings.OUTBOX_MAX_ATTEMPTS
            delay = backoff_seconds(attempts, settings.OUTBOX_BACKOFF_MAX_SECONDS)
            OutboxEvent.objects.filter(sequence=sequence).update(
                attempts=attempts,
                last_error=error_text[:2000],
                next_attempt_at=None if parked else timezone.now() + timedelta(seconds=delay),
                status=OutboxEvent.Status.FAILED if parked else OutboxEvent.Status.PENDING,
            )
            if parked:
                result.parked.append(event_id)
            logger.error(
                "failed to publish event %s (%s): %s",
                event_id,
                event_type,
                error_text,
                extra={
                    "component": "OutboxWorker",
                    "event_id": event_id,
                    "event_type": event_type,
                    "sequence": sequence,
                    "attempts": attempts,
                    "parked": parked,
                    "error": error_text,
                },
            )
        else:
            result.transport_error = error_text
            metrics.EVENT_BUS_ERRORS.labels(kind="transport").inc()
            logger.error(
                "failed to publish event %s (%s): event bus unreachable: %s",
                event_id,
                event_type,
                error_text,
                extra={
                    "component": "EventBusAdapter",
                    "event_id": event_id,
                    "event_type": event_type,
                    "sequence": sequence,
                    "error": error_text,
                },
            )
        return len(acked)
