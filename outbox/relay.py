"""The OutboxWorker: relays committed outbox rows to the event bus, in sequence order.

The outbox is cut into ``OUTBOX_PARTITIONS`` lanes by aggregate id (``outbox/partitions.py``). One
relay publishes a lane at a time: each batch runs in a transaction holding the lane's
``pg_try_advisory_xact_lock`` (safe behind PgBouncer in transaction mode); a relay that finds a lane's
lock taken goes on to the next lane and reports "busy". A run relays every lane it can take. The
batch transaction is the one place where a transaction spans network I/O, bounded by the publish
timeout (docs/adr/0002-relay-lock.md). After letting a lane's lock go the holder looks for due rows
of the lane once more, so a poke that found the lock taken is never lost.

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
from outbox.models import OutboxEvent, QueuedEvent
from outbox.partitions import Lane, lanes, other_layout_pending, other_layouts

logger = logging.getLogger("iam.OutboxWorker")

TABLE = OutboxEvent._meta.db_table
QUEUE = QueuedEvent._meta.db_table

# Pending rows are found in the queue (q) and their payload read from the outbox (o), joined by
# sequence; bounding both sides by ``after`` lets the join start where the batch starts.
_DUE = "(q.next_attempt_at IS NULL OR q.next_attempt_at <= now())"
_LANE = "q.status = 'pending' AND q.partition_count = %(count)s AND q.partition = %(partition)s"
_AFTER = "q.sequence > %(after)s AND o.sequence > %(after)s"
_BLOCKED = "(status = 'failed' OR (status = 'pending' AND next_attempt_at > now()))"
# The WAL insert position, read with the batch: past the commit of every row the batch sees, so it
# is each event's consistency token (``consistencytoken``: read at least this fresh, docs/events.md).
WAL_POSITION = "pg_current_wal_insert_lsn()::text"
_COLUMNS = (
    "o.sequence, o.event_id::text, o.event_type, o.subject, o.payload::text, o.attempts, o.aggregate_id, "
    + WAL_POSITION
)
_FROM = f"{QUEUE} q JOIN {TABLE} o ON o.sequence = q.sequence"
SELECT_BATCH = f"""
    SELECT {_COLUMNS} FROM {_FROM}
    WHERE {_LANE} AND {_DUE} AND {_AFTER} ORDER BY q.sequence LIMIT %(limit)s
"""


def _holding_back(held: str) -> str:
    return f"""
    SELECT {_COLUMNS} FROM {_FROM}
    WHERE {_LANE} AND {_DUE}
      AND NOT EXISTS (
        SELECT 1 FROM {QUEUE} b
        WHERE b.aggregate_id = q.aggregate_id AND b.sequence < q.sequence AND ({held})
      )
      AND {_AFTER}
    ORDER BY q.sequence LIMIT %(limit)s
"""


# Used only while some event is parked or backing off: skip the later events of its aggregate.
_HELD_BY_BLOCKED = "b.status = 'failed' OR (b.status = 'pending' AND b.next_attempt_at > now())"
SELECT_BATCH_HOLDING_BACK = _holding_back(_HELD_BY_BLOCKED)
# Used only while rows of another partition layout are pending (OUTBOX_PARTITIONS changed): also skip
# an event while an earlier one of its aggregate waits in a lane of the other layout.
SELECT_BATCH_ACROSS_LAYOUTS = _holding_back(
    f"{_HELD_BY_BLOCKED} OR (b.status = 'pending' AND b.partition_count <> q.partition_count)"
)
ANY_BLOCKED = f"SELECT EXISTS (SELECT 1 FROM {QUEUE} WHERE {_BLOCKED})"
ANY_DUE = f"SELECT EXISTS ({SELECT_BATCH_ACROSS_LAYOUTS.replace(_AFTER, 'true').replace('LIMIT %(limit)s', 'LIMIT 1')})"
# An UPDATE of no indexed column of the outbox (a HOT update); the queue's trigger deletes the rows'
# queue entries in the same statement (migration 0004).
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
    held: set[Lane] = field(default_factory=set, repr=False)  # lanes this run held (relayed, or found empty)
    held_by_others: set[Lane] = field(default_factory=set, repr=False)  # their holder re-checks before letting go
    other_layouts: list[int] = field(
        default_factory=list
    )  # OUTBOX_PARTITIONS values of pending rows written before a change

    @property
    def partitions(self) -> int:
        return len(self.held)

    @property
    def busy_partitions(self) -> int:
        return len(self.held_by_others - self.held)

    @property
    def outcome(self) -> str:
        """The run's label on ``outbox_relay_runs_total``."""
        if self.transport_error:
            return "transport_error"
        if self.event_errors:
            return "event_error"
        if self.published:
            return "published"
        return "busy" if self.busy else "idle"

    def as_dict(self) -> dict:
        return {
            "busy": self.busy,
            "partitions": self.partitions,
            "busy_partitions": self.busy_partitions,
            "other_layouts": self.other_layouts,
            "published": self.published,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "transport_error": self.transport_error,
            "event_errors": self.event_errors,
            "parked": self.parked,
        }


def _messages(rows: list[tuple]) -> list[Message]:
    signed: dict[str, str] = {}  # one WAL position for most of a batch: sign each once
    messages = []
    for row in rows:
        lsn = row[7]
        token = signed.get(lsn) or signed.setdefault(lsn, tokens.issue(lsn_value(lsn)))
        messages.append(Message(event_id=row[1], subject=row[3], payload=with_token(row[4], token), key=str(row[6])))
    return messages


def with_token(payload: str, token: str) -> bytes:
    """The stored envelope (a JSON object's text) with the ``consistencytoken`` extension attribute
    (``token``: ``tokens.issue`` of the batch's WAL position)."""
    return ('{"consistencytoken":"' + token + '",' + payload.lstrip()[1:]).encode()


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
        """One relay run: every lane whose lock it can take, each in sequence order (``max_rounds``
        lock rounds per lane at most). ``busy`` when some lane was held by another run."""
        result = RelayResult()
        count = settings.OUTBOX_PARTITIONS
        with connection.cursor() as cursor:
            result.other_layouts = other_layouts(cursor, count)
        if result.other_layouts:
            logger.warning(
                "outbox holds pending events written with OUTBOX_PARTITIONS=%s (now %s): relaying them "
                "first, each event after the earlier events of its aggregate",
                ",".join(map(str, result.other_layouts)),
                count,
                extra={"component": "OutboxWorker", "layouts": result.other_layouts, "partitions": count},
            )
        # While layouts are mixed an event may wait for a lane of the other layout: go round again.
        for _ in range(3 if result.other_layouts else 1):
            published = result.published
            for lane in lanes(count, result.other_layouts):
                self._run_lane(lane, result, max_rounds)
                if result.transport_error:
                    break
            if result.transport_error or result.published == published:
                break
        if not result.transport_error:
            metrics.RELAY_LAST_SUCCESS.set(time.time())
        metrics.RELAY_RUNS.labels(outcome=result.outcome).inc()
        return result

    def _run_lane(self, lane: Lane, result: RelayResult, max_rounds: int) -> None:
        for _ in range(max_rounds):
            rejected = result.event_errors
            seen, published = self._locked_round(lane, result)
            if seen < 0:  # another relay holds the lane and re-checks before it lets go
                result.busy = True
                result.held_by_others.add(lane)
                return
            result.held.add(lane)
            if result.transport_error:
                return  # the bus is down: back off
            if seen and not published and result.event_errors == rejected:
                return  # nothing went out and nothing was set aside: do not spin
            # A rejected event now backs off (or is parked) and holds back only its own aggregate:
            # the lane goes on with the others in this run.
            if not self._any_due(lane):  # the lock is released: one more look for rows committed meanwhile
                return

    def _any_due(self, lane: Lane) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(ANY_DUE, {"count": lane.count, "partition": lane.partition})
            return bool(cursor.fetchone()[0])

    def _locked_round(self, lane: Lane, result: RelayResult) -> tuple[int, int]:
        """Publish the lane's batches while holding its lock; (rows seen, rows published), or (-1, 0)
        when another relay holds the lock."""
        seen = published_total = 0
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lane.lock_key])
            if not cursor.fetchone()[0]:
                return -1, 0
            # Pending rows are often not in the table's statistics yet (a burst, an outage): without
            # this the planner sorts every pending row instead of walking the partial index in order.
            cursor.execute("SET LOCAL enable_sort = off")
            # Batch N+1 is selected while batch N is in flight, started once N is fully acknowledged (a
            # batch never starts before every event of the previous one is in the stream: per-aggregate
            # order), and in flight while N is marked. The database work of one batch overlaps the
            # round trip of the other; a selection made for a batch that then fails is dropped.
            rows = self._select(cursor, lane, after=0)
            handle = self.adapter.publish_batch_start(_messages(rows)) if rows else None
            for number in range(self.max_batches_per_lock):
                if handle is None:
                    break
                last = number + 1 == self.max_batches_per_lock
                next_rows = [] if last else self._select(cursor, lane, rows[-1][0])
                outcome = self.adapter.publish_batch_result(handle)
                result.batches += 1
                seen += len(rows)
                failed = outcome.error is not None
                handle = self.adapter.publish_batch_start(_messages(next_rows)) if next_rows and not failed else None
                published = self._settle(cursor, rows, outcome, result)
                published_total += published
                if failed or published < len(rows):
                    if handle is not None:  # not reached: a failed batch starts no next one
                        self.adapter.publish_batch_result(handle)
                    break
                rows = next_rows
        return seen, published_total

    def _select(self, cursor: CursorWrapper, lane: Lane, after: int) -> list[tuple[Any, ...]]:
        params = {"count": lane.count, "partition": lane.partition, "after": after, "limit": self.batch_size}
        cursor.execute(ANY_BLOCKED)
        cursor.execute(SELECT_BATCH_HOLDING_BACK if cursor.fetchone()[0] else SELECT_BATCH, params)
        rows = cursor.fetchall()
        # Asked after the select: it sees every row committed before those selected, so an earlier
        # event of a selected aggregate pending in another layout's lane cannot slip past.
        if rows and other_layout_pending(cursor, lane.count):
            cursor.execute(SELECT_BATCH_ACROSS_LAYOUTS, params)
            rows = cursor.fetchall()
        return one_per_aggregate(rows)

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
