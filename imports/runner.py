"""Running a queued import job (the worker's side): the same code path as ``manage.py import_users``."""

from __future__ import annotations

import io

from django.utils import timezone

from access.principals import Principal
from core.actors import acting_as
from imports.models import ImportJob
from imports.transfer import FileFormatError, users_import, write_error_report


def import_job_run(*, job_id: str) -> ImportJob:
    """Run a queued job (the worker's side): same code path as the command."""
    updated = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING
    )
    job = ImportJob.objects.select_related("tenant").get(pk=job_id)
    if not updated:
        return job  # already taken by another worker, or finished
    kind, _, name = job.created_by.partition(":")
    try:
        with acting_as(Principal(kind or "system", name or "import", frozenset(), None)):
            result = users_import(
                tenant=job.tenant, stream=io.BytesIO(job.content), fmt=job.format, mode=job.mode, dry_run=job.dry_run
            )
    except FileFormatError as error:
        job.status, job.error = ImportJob.Status.FAILED, f"{error} — nothing was imported"
    else:
        report = result.report
        job.rows, job.created, job.updated = result.rows, report.created, report.updated
        job.unchanged, job.invalid, job.written = report.unchanged, report.invalid, result.written
        if report.errors:
            buffer = io.StringIO()
            write_error_report(buffer, report)
            job.report = buffer.getvalue()
        if result.written or job.dry_run:
            job.status = ImportJob.Status.SUCCEEDED
        else:  # atomic with invalid rows: all or nothing, so nothing
            job.status = ImportJob.Status.FAILED
            job.error = f"{report.invalid} invalid row(s) in atomic mode — nothing was written"
    job.finished_at = timezone.now()
    job.save()
    return job
