"""Tenants: the isolation boundary of every subject, attribute definition and event."""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models

from core.guards import DomainModel

SLUG_PATTERN = r"^(?!-)[a-z0-9-]{1,63}(?<!-)$"
UUID_SHAPE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
slug_validator = RegexValidator(
    SLUG_PATTERN, "A slug is a DNS label: 1-63 lowercase letters, digits or '-', not at either end."
)
not_uuid_validator = RegexValidator(UUID_SHAPE, "A slug must not look like a UUID.", inverse_match=True)


class Tenant(DomainModel):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator, not_uuid_validator])
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    attributes = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=1, editable=False)
    deleted_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Soft-deleted at; restorable until purged after retention."
    )
    schema_version = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Bumped by every change of the tenant's attribute definitions."
    )
    events_include_pii = models.BooleanField(
        default=False,
        help_text='Events carry the values of PII-flagged attributes; otherwise {"redacted": true} (docs/events.md).',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=models.Q(slug__regex=SLUG_PATTERN), name="tenant_slug_is_dns_label"),
            models.CheckConstraint(condition=~models.Q(slug__regex=UUID_SHAPE), name="tenant_slug_not_uuid"),
            models.CheckConstraint(condition=models.Q(status__in=["active", "suspended"]), name="tenant_status_valid"),
        ]

    def __str__(self) -> str:
        return self.slug


class TenantRevision(models.Model):
    """A per-tenant change counter: +1 in the transaction of every recorded change of the tenant.

    Incremented only by ``outbox.changes.record_changes`` (the one write funnel), under the row's
    lock, so its value orders the tenant's changes by commit, unlike ``updated_at`` (the app's clock
    before commit). The OPA bundle's revision (its ETag) is derived from it. No foreign key: the
    change that purges a tenant is recorded after the tenant row is gone.
    """

    tenant_id = models.UUIDField(primary_key=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.value}"
