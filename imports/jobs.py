"""Import jobs: the console's and the API's asynchronous form of ``manage.py import_users``."""

from __future__ import annotations

from django.db import transaction

from core.actors import current_actor
from imports.models import ImportJob
from imports.tasks import run_import_job_task
from tenants.models import Tenant


def import_job_create(
    *, tenant: Tenant, content: bytes, file_name: str, fmt: str, mode: str = "atomic", dry_run: bool = False
) -> ImportJob:
    """Store the file and queue the job (on commit) for a worker."""
    actor = current_actor()
    job = ImportJob.objects.create(
        tenant=tenant,
        created_by=actor.label,
        file_name=file_name[:255],
        content=content,
        format=fmt,
        mode=mode,
        dry_run=dry_run,
    )
    transaction.on_commit(lambda: run_import_job_task.delay(str(job.id)), robust=True)
    return job
