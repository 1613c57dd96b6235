"""Draining the outbox synchronously in tests, through the real relay and a real NATS server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from outbox.models import OutboxEvent
from outbox.partitions import Lane
from outbox.relay import OutboxWorker, RelayResult


def drain_outbox() -> RelayResult:
    result = OutboxWorker().run()
    assert not result.transport_error, result.transport_error
    return result


def events(**filters: object) -> list[tuple[str, int]]:
    """(event type, aggregate version) of the outbox rows, in sequence order."""
    return list(
        OutboxEvent.objects.filter(**filters).order_by("sequence").values_list("event_type", "aggregate_version")
    )


@contextlib.contextmanager
def lane_held(lane: Lane) -> Iterator[None]:
    """The lane's lock held by another connection (another relay), until the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import connection, transaction

        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lane.lock_key])
                taken.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        release.set()
        thread.join(30)
