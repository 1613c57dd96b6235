"""The audit log: who changed which object, when, and from what to what (PII redacted)."""

from __future__ import annotations

from django.db import models


class AuditRecord(models.Model):
    class Action(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_kind = models.CharField(max_length=16, help_text="console, key or system")
    actor = models.CharField(max_length=200, help_text="Console username, API key name or command.")
    actor_id = models.CharField(max_length=64, blank=True, default="")
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=32)
    object_id = models.UUIDField(db_index=True)
    object_repr = models.CharField(max_length=300, blank=True, default="")
    tenant_id = models.UUIDField(db_index=True)
    event_id = models.UUIDField(null=True, blank=True, help_text="The outbox event written with this change.")
    changes = models.JSONField(default=dict, help_text="field → [old, new]; PII attributes redacted.")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_repr}"
