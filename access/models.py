"""Principals other than superusers: service-account API keys and tenant administrators."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class ApiKey(models.Model):
    """A service account's key. Only its SHA-256 is stored; the key is shown once, at creation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'opa-bundle-poller'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="Visible part of the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = ArrayField(models.CharField(max_length=32), default=list)
    all_tenants = models.BooleanField(default=False, help_text="If set, the key reaches every tenant.")
    tenant_ids = ArrayField(
        models.UUIDField(), default=list, blank=True, help_text="The tenants the key reaches (fixed at creation)."
    )
    attributes = ArrayField(
        models.CharField(max_length=64),
        null=True,
        blank=True,
        help_text="The attribute keys the key may read (* for every key); empty for every key. PII needs pii:read.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class TenantAdministrator(models.Model):
    """A console user (staff, not superuser) who administers one tenant."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="administered_tenants")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="administrators")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="tenant_administrator_unique")]

    def __str__(self) -> str:
        return f"{self.user} administers {self.tenant}"


class PiiReadCount(models.Model):
    """How many subjects a key read PII-flagged values of, per hour (``access.pii_audit``)."""

    key_id = models.UUIDField()
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "PII read count"
        ordering = ["-hour", "key_id"]
        constraints = [models.UniqueConstraint(fields=["key_id", "hour"], name="pii_read_count_key_hour")]

    def __str__(self) -> str:
        return f"{self.key_id} {self.hour:%Y-%m-%d %H}:00 {self.count}"
