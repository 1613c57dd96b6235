"""Users: the policy subjects of a tenant. Not console logins (those are ``auth.User``)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.db import models

from core.guards import DomainModel
from tenants.models import Tenant


class User(DomainModel):
    """A policy subject: the user a downstream service asks the PIP about."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="users")
    external_id = models.CharField(max_length=255)
    email = models.EmailField(max_length=254, blank=True, default="")
    display_name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    attributes = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "policy user"
        verbose_name_plural = "policy users"
        ordering = ["tenant_id", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="user_external_id_unique_per_tenant"),
            models.CheckConstraint(condition=models.Q(status__in=["active", "disabled"]), name="user_status_valid"),
            models.CheckConstraint(condition=~models.Q(external_id=""), name="user_external_id_not_empty"),
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at", "id"], name="user_tenant_created"),
            GinIndex(fields=["attributes"], opclasses=["jsonb_path_ops"], name="user_attributes_gin"),
        ]

    def __str__(self) -> str:
        return self.external_id


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
