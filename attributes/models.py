"""Attribute definitions: the per-tenant schema that every attribute value is validated against."""

from __future__ import annotations

import uuid

from django.db import models

from core.guards import DomainModel

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class AttributeDefinition(DomainModel):
    class Target(models.TextChoices):
        USER = "user", "User"
        TENANT = "tenant", "Tenant"
        GROUP = "group", "Group"
        USER_AND_GROUP = "user_and_group", "Users and groups"

    class Type(models.TextChoices):
        STRING = "string", "String"
        INTEGER = "integer", "Integer"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "Boolean"
        DATE = "date", "Date"
        DATETIME = "datetime", "Date and time"
        ENUM = "enum", "Enum"
        STRING_LIST = "string_list", "List of strings"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="attribute_definitions")
    key = models.CharField(max_length=64)
    target = models.CharField(max_length=16, choices=Target.choices, default=Target.USER)
    type = models.CharField(max_length=16, choices=Type.choices)
    required = models.BooleanField(default=False)
    allowed_values = models.JSONField(null=True, blank=True, help_text="Allowed values (enum; optional for strings).")
    pattern = models.CharField(
        max_length=500, blank=True, default="", help_text="Regular expression a string must fully match."
    )
    min_value = models.FloatField(null=True, blank=True, help_text="Minimum for integer and number.")
    max_value = models.FloatField(null=True, blank=True, help_text="Maximum for integer and number.")
    max_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Maximum characters of a string (each item of a list)."
    )
    max_items = models.PositiveIntegerField(null=True, blank=True, help_text="Maximum items of a list of strings.")
    default = models.JSONField(
        null=True, blank=True, help_text="The effective value of a user with no value of its own or from a group."
    )
    merge = models.CharField(
        max_length=16,
        choices=[("replace", "Replace"), ("union", "Union")],
        default="replace",
        help_text="union (string_list only): a user's effective value is the sorted union of every source.",
    )
    description = models.TextField(blank=True, default="")
    pii = models.BooleanField(default=False, help_text="Personally identifiable: redacted in audit records.")
    searchable = models.BooleanField(
        default=False,
        help_text="Range and prefix search on this key use an index of their own (built in the background).",
    )
    version = models.PositiveBigIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "target", "key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="attribute_key_unique_per_tenant"),
            models.CheckConstraint(condition=models.Q(key__regex=KEY_PATTERN), name="attribute_key_charset"),
        ]

    def __str__(self) -> str:
        return f"{self.target}.{self.key}"


class SearchIndex(models.Model):
    """The btree index of a searchable definition: built and dropped by a worker, outside any transaction.

    Operational state, not part of the schema: no event is written when it changes.
    """

    class State(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        DROPPING = "dropping", "Dropping"

    definition = models.OneToOneField(AttributeDefinition, on_delete=models.CASCADE, related_name="search_index")
    name = models.CharField(max_length=63, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.BUILDING)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


#: The targets whose definitions a subject of a kind holds values of (a ``user_and_group`` definition
#: constrains both kinds).
TARGETS_OF_SUBJECT = {
    "user": ("user", "user_and_group"),
    "group": ("group", "user_and_group"),
    "tenant": ("tenant",),
}
#: The kinds of subject a definition's target constrains.
SUBJECTS_OF_TARGET = {
    "user": ("user",),
    "group": ("group",),
    "tenant": ("tenant",),
    "user_and_group": ("user", "group"),
}
