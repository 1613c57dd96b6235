"""Writing audit records (inside the change's transaction) and purging them by retention."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from audit.models import AuditRecord
from core.actors import current_actor

REDACTED = "***"
SKIPPED_FIELDS = {"version", "changed", "id", "tenant_id"}


PiiSource = Callable[[UUID], set[str]]
_pii_sources: list[PiiSource] = []


def redact_keys_from(source: PiiSource) -> None:
    """Register ``source(tenant_id)`` → attribute keys whose values the audit log redacts (``attributes.apps``)."""
    _pii_sources.append(source)


def pii_keys(tenant_id: UUID) -> set[str]:
    """The tenant's attribute keys whose values the audit log redacts."""
    return set().union(*(source(tenant_id) for source in _pii_sources))


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None, pii: set[str]) -> dict[str, list[Any]]:
    """``field → [old, new]`` of the fields that differ; attribute values as ``attributes.<key>``."""
    before, after = before or {}, after or {}
    changes: dict[str, list[Any]] = {}
    for field in sorted(set(before) | set(after)):
        if field in SKIPPED_FIELDS or field == "attributes":
            continue
        if before.get(field) != after.get(field):
            changes[field] = [before.get(field), after.get(field)]
    old_attrs, new_attrs = before.get("attributes") or {}, after.get("attributes") or {}
    for key in sorted(set(old_attrs) | set(new_attrs)):
        old, new = old_attrs.get(key), new_attrs.get(key)
        if old != new:
            changes[f"attributes.{key}"] = [
                REDACTED if key in pii and old is not None else old,
                REDACTED if key in pii and new is not None else new,
            ]
    return changes


def audit_build(
    *,
    action: str,
    object_type: str,
    object_id: UUID,
    tenant_id: UUID,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    pii: set[str],
    object_repr: str = "",
    event_id: UUID | None = None,
) -> AuditRecord:
    actor = current_actor()
    return AuditRecord(
        actor_kind=actor.kind,
        actor=actor.name,
        actor_id=actor.id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:300],
        tenant_id=tenant_id,
        event_id=event_id,
        changes=diff(before, after, pii),
    )


def audit_purge(*, older_than_days: int | None = None) -> int:
    days = settings.AUDIT_RETENTION_DAYS if older_than_days is None else older_than_days
    deleted, _ = AuditRecord.objects.filter(at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
