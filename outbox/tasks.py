"""Celery tasks of the outbox: the relay (beat every OUTBOX_RELAY_INTERVAL + on-commit pokes) and retention."""

from __future__ import annotations

from celery import shared_task

from outbox import retention, selectors


@shared_task(name="outbox.relay", ignore_result=True, acks_late=False)
def relay_outbox_task() -> dict:
    from outbox.relay import OutboxWorker

    return OutboxWorker().run().as_dict()


@shared_task(name="outbox.purge_published", ignore_result=True)
def purge_published_task() -> int:
    return retention.outbox_purge_published()


@shared_task(name="outbox.refresh_gauges", ignore_result=True)
def refresh_gauges_task() -> dict:
    return selectors.outbox_stats().as_dict()
