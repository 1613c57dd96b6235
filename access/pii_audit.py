"""Reads of PII by ``pii:read`` keys, counted per key per hour (not logged one by one).

Each process adds up its counts in memory and writes them with **one** upsert (``INSERT … ON
CONFLICT DO UPDATE``, every pending key-hour in one statement) at most every
``FLUSH_SECONDS``, or at once when the hour turns: the PIP's hot path pays a dictionary increment,
not a round trip. What a process counted in its last seconds before it is killed is lost (a gunicorn
worker's exit flushes them); the counts are an audit trail of who reads PII how much, not a ledger. A
Prometheus counter labelled by key id would be a cardinality risk: ``pii_reads_total`` has no
labels, the table has the per-key detail (the console's "PII read counts").
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.db import connection
from django.utils import timezone
from prometheus_client import Counter

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
PII_READS = Counter("pii_reads_total", "Subjects whose PII-flagged values were released to a pii:read key.")
UPSERT = """
    INSERT INTO access_piireadcount (key_id, hour, count)
    SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::bigint[])
    ON CONFLICT (key_id, hour) DO UPDATE SET count = access_piireadcount.count + EXCLUDED.count
"""

_PENDING: dict[tuple[str, datetime], int] = {}
_LOCK = threading.Lock()
_STATE = {"flushed": time.monotonic()}


def _hour() -> datetime:
    return timezone.now().replace(minute=0, second=0, microsecond=0)


def pii_read_count(*, key_id: str, subjects: int = 1) -> None:
    """Count ``subjects`` released with PII to the key; flushes when due."""
    if not key_id or subjects <= 0:
        return
    PII_READS.inc(subjects)
    hour = _hour()
    with _LOCK:
        _PENDING[(key_id, hour)] = _PENDING.get((key_id, hour), 0) + subjects
        due = time.monotonic() - _STATE["flushed"] >= FLUSH_SECONDS or any(h != hour for _, h in _PENDING)
    if due:
        pii_reads_flush()


def pii_reads_flush() -> int:
    """Write the pending counts (one statement); returns how many key-hours were written."""
    with _LOCK:
        pending = dict(_PENDING)
        _PENDING.clear()
        _STATE["flushed"] = time.monotonic()
    if not pending:
        return 0
    keys = list(pending)
    try:
        if connection.connection is not None and not connection.in_atomic_block:
            # Called from the express lane too, outside Django's request cycle, which would have closed
            # a connection past CONN_MAX_AGE or broken since its last use.
            connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute(UPSERT, [[k for k, _ in keys], [h for _, h in keys], [pending[k] for k in keys]])
    except Exception:
        logger.exception("could not record PII read counts")
        with _LOCK:
            for item, count in pending.items():
                _PENDING[item] = _PENDING.get(item, 0) + count
        return 0
    return len(keys)
