from __future__ import annotations

from celery import shared_task

from imports.runner import import_job_run


@shared_task(name="users.run_import_job", ignore_result=True)
def run_import_job_task(job_id: str) -> str:
    return import_job_run(job_id=job_id).status
