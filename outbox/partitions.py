"""The relay's lanes: which partition an event goes to, which lock guards it, which lanes hold work.

An event's lane is ``(partition_count, partition)``: the writer's ``OUTBOX_PARTITIONS`` and
``crc32(aggregate id) mod OUTBOX_PARTITIONS``, stored on the row in the change's transaction. crc32
of the id's 16 bytes is the same in every process and release (Python's ``hash()`` is not). All of an
aggregate's events written under one setting share a lane, so a lane relayed in sequence order keeps
per-aggregate order; each lane has its own advisory lock, so lanes relay in parallel.

Changing ``OUTBOX_PARTITIONS`` on a live system leaves rows of the old layout pending beside rows of
the new one (and, during a rolling deploy, old web processes still write the old layout). The relay
finds those lanes (:func:`other_layouts`), relays them too, and while more than one layout is
pending it holds an event back as long as an earlier event of its aggregate is pending in another
layout (``relay.SELECT_BATCH_ACROSS_LAYOUTS``): order per aggregate holds across the change, with no
drain and no refusal. docs/runbook.md, "Changing OUTBOX_PARTITIONS", is the procedure.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from uuid import UUID

from django.db.backends.utils import CursorWrapper

from outbox.models import QueuedEvent

LOCK_KEY = 0x1A4_0B0C  # pg advisory lock key of the relay's first lane: (1, 0), the one lane of old
MAX_PARTITIONS = 256
QUEUE = QueuedEvent._meta.db_table  # the unpublished events, one narrow row each


def partition_of(aggregate_id: UUID, count: int) -> int:
    """The partition of ``aggregate_id``'s events among ``count``: stable across processes and releases."""
    return zlib.crc32(aggregate_id.bytes) % count


@dataclass(frozen=True)
class Lane:
    count: int  # the layout: OUTBOX_PARTITIONS when the row was written
    partition: int

    @property
    def lock_key(self) -> int:
        """The lane's advisory lock. Lane (1, 0) keeps the single relay's key: a relay of the release
        before partitions and one of this release exclude each other during the upgrade."""
        return LOCK_KEY + (self.count - 1) * MAX_PARTITIONS + self.partition


def lanes(count: int, others: list[int], *, start: int | None = None) -> list[Lane]:
    """The lanes a run tries: every lane of the other pending layouts, then the configured layout's,
    each layout from a random partition on (concurrent runs spread out instead of queueing)."""
    result: list[Lane] = []
    for layout in [*sorted(others), count]:
        first = random.randrange(layout) if start is None else start % layout
        result += [Lane(layout, (first + offset) % layout) for offset in range(layout)]
    return result


OTHER_LAYOUT_PENDING = f"""
    SELECT EXISTS (SELECT 1 FROM {QUEUE} WHERE status = 'pending' AND partition_count < %s)
        OR EXISTS (SELECT 1 FROM {QUEUE} WHERE status = 'pending' AND partition_count > %s)
"""
PENDING_LAYOUTS = f"SELECT DISTINCT partition_count FROM {QUEUE} WHERE status = 'pending' ORDER BY 1"


def other_layout_pending(cursor: CursorWrapper, count: int) -> bool:
    """Whether any pending row was written under another ``OUTBOX_PARTITIONS`` (two index probes)."""
    cursor.execute(OTHER_LAYOUT_PENDING, [count, count])
    row = cursor.fetchone()
    return bool(row and row[0])


def other_layouts(cursor: CursorWrapper, count: int) -> list[int]:
    """The layouts other than ``count`` that pending rows were written under (none: one index probe)."""
    if not other_layout_pending(cursor, count):
        return []
    cursor.execute(PENDING_LAYOUTS)
    return [layout for (layout,) in cursor.fetchall() if layout != count]


IDLE_WITH_PENDING = f"""
    SELECT count(*) FROM generate_series(0, %(count)s - 1) AS p
    WHERE EXISTS (
        SELECT 1 FROM {QUEUE} WHERE status = 'pending' AND partition_count = %(count)s AND partition = p
    )
      AND NOT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = 0
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND objid = (%(base)s + p)::oid
    )
"""


def idle_partitions_with_pending(cursor: CursorWrapper, count: int) -> int:
    """How many partitions of layout ``count`` hold pending rows and no relay holds (one query)."""
    cursor.execute(IDLE_WITH_PENDING, {"count": count, "base": Lane(count, 0).lock_key})
    row = cursor.fetchone()
    return int(row[0]) if row else 0


PENDING_BY_PARTITION = f"""
    SELECT partition_count, partition, count(*), extract(epoch FROM now() - min(created_at))
    FROM {QUEUE} WHERE status = 'pending' GROUP BY 1, 2 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class PartitionBacklog:
    partition: str  # "3", or "3/8" for a lane of another layout than OUTBOX_PARTITIONS
    pending: int
    oldest_pending_age_seconds: float


def backlog_by_partition(cursor: CursorWrapper, count: int) -> list[PartitionBacklog]:
    """Pending rows and the oldest one's age per partition; every partition of ``count`` appears (0 when
    empty), lanes of another layout only while they hold rows."""
    cursor.execute(PENDING_BY_PARTITION)
    found = {(layout, partition): (pending, float(age or 0.0)) for layout, partition, pending, age in cursor.fetchall()}
    result = [PartitionBacklog(str(p), *found.pop((count, p), (0, 0.0))) for p in range(count)]
    result += [PartitionBacklog(f"{p}/{layout}", *figures) for (layout, p), figures in sorted(found.items())]
    return result
