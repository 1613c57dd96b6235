"""Groups: named sets of a tenant's users and other groups, with attribute values their members inherit."""

from __future__ import annotations

import uuid

from django.db import models

from core.guards import DomainModel

KEY_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$"  # a slug (DNS-label shaped)


class Group(DomainModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="groups")
    key = models.CharField(max_length=64, help_text="A slug, unique in the tenant: a-z, 0-9 and '-'.")
    display_name = models.CharField(max_length=200, blank=True, default="")
    external_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="The group's id at an identity provider (unique per tenant)."
    )
    priority = models.IntegerField(default=0, help_text="Of two groups giving a value, the higher priority wins.")
    attributes = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="group_key_unique_per_tenant"),
            models.UniqueConstraint(fields=["tenant", "external_id"], name="group_external_id_unique_per_tenant"),
            models.CheckConstraint(condition=models.Q(key__regex=KEY_PATTERN), name="group_key_slug"),
        ]

    def __str__(self) -> str:
        return self.key


class Membership(DomainModel):
    """One member of a group: a user or another group (exactly one of ``user``, ``child``)."""

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey("users.User", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    child = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="parent_links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "user"], name="membership_user_once"),
            models.UniqueConstraint(fields=["group", "child"], name="membership_child_once"),
            models.CheckConstraint(
                condition=models.Q(user__isnull=True) ^ models.Q(child__isnull=True), name="membership_one_member"
            ),
            models.CheckConstraint(condition=~models.Q(group=models.F("child")), name="membership_not_itself"),
        ]
        indexes = [
            models.Index(fields=["user"], name="membership_by_user"),
            models.Index(fields=["child"], name="membership_by_child"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id or self.child_id} in {self.group_id}"
