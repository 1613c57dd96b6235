"""Users: the policy subjects of a tenant. Not console logins (those are ``auth.User``)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Upper

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
    profile = models.JSONField(
        default=dict,
        db_default=models.Value({}, models.JSONField()),  # rows written by COPY or raw SQL (benchmarks) too
        blank=True,
        help_text="What an identity provider says of the user beyond our fields (SCIM: externalId, name, "
        "emails, the enterprise extension…; docs/scim.md). Not typed attributes: the PIP does not serve it.",
    )
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
            # SCIM's userName (our external_id) compares case-insensitively: `userName eq "…"` is one probe.
            models.Index(models.F("tenant"), Upper("external_id"), name="user_tenant_username_ci"),
        ]

    def __str__(self) -> str:
        return self.external_id
