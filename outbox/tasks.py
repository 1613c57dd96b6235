"""Celery tasks of the outbox: the relay (beat every OUTBOX_RELAY_INTERVAL + on-commit pokes) and retention."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from outbox import retention, selectors


@shared_task(name="outbox.relay", ignore_result=True, acks_late=False)
def relay_outbox_task(fan_out: bool = True) -> dict:
    """One relay run. A beat tick or a poke (``fan_out``) first asks for one more run per further
    idle partition with pending rows, up to ``OUTBOX_RELAY_CONCURRENCY`` runs in all."""
    from outbox.relay import OutboxWorker

    if fan_out:
        for _ in range(selectors.relay_runs_wanted() - 1):
            relay_outbox_task.apply_async(
                kwargs={"fan_out": False}, expires=max(settings.OUTBOX_RELAY_INTERVAL * 5, 5), retry=False
            )
    return OutboxWorker().run().as_dict()


@shared_task(name="outbox.purge_published", ignore_result=True)
def purge_published_task() -> int:
    return retention.outbox_purge_published()


@shared_task(name="outbox.refresh_gauges", ignore_result=True)
def refresh_gauges_task() -> dict:
    return selectors.outbox_stats().as_dict()
