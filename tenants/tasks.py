"""Periodic purge of soft-deleted tenants past ``TENANT_RETENTION_DAYS``."""

from __future__ import annotations

from celery import shared_task

from tenants.services import tenants_purge_due


@shared_task(name="tenants.purge_deleted", ignore_result=True)
def purge_deleted_tenants_task() -> list[str]:
    return tenants_purge_due()
