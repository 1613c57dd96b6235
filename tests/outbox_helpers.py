"""Draining the outbox synchronously in tests, through the real relay and a real NATS server."""

from __future__ import annotations

from outbox.models import OutboxEvent
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
