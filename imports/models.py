"""Import jobs: a bulk import run by a worker, with the uploaded file and the result."""

from __future__ import annotations

import uuid

from django.db import models

from tenants.models import Tenant


class ImportJob(models.Model):
    """A bulk import run by a worker: the uploaded file, the options, and the result."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.CharField(max_length=200, blank=True, default="")
    file_name = models.CharField(max_length=255, blank=True, default="")
    content = models.BinaryField(help_text="The uploaded file, kept until the job is purged.")
    format = models.CharField(max_length=8, choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])
    mode = models.CharField(max_length=8, choices=[("atomic", "Atomic"), ("partial", "Partial")], default="atomic")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    written = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="", help_text="Why the file could not be imported at all.")
    report = models.TextField(blank=True, default="", help_text="The error report (CSV).")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "users_importjob"  # the table kept its name when the model left the users app
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.file_name or self.id} into {self.tenant.slug} ({self.status})"

    @property
    def outcome(self) -> str:
        """What the run did, in words; the counts of a run that wrote nothing are what it would have done."""
        if self.status in (self.Status.QUEUED, self.Status.RUNNING):
            return self.get_status_display()
        if self.written:
            return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, invalid {self.invalid}"
        if not self.rows:
            return "nothing written"
        return (
            f"nothing written — would create {self.created}, update {self.updated} "
            f"({self.unchanged} unchanged, {self.invalid} invalid)"
        )
