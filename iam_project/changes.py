"""Recording a domain change: its outbox event, its audit record and the tenant's revision, in the
change's transaction.

The one call every service makes after changing a row (``record_change``), so that no door can
write the event without the audit record or the other way round. It also counts the change in the
tenant's ``TenantRevision`` (the OPA bundle's ETag), under that row's lock, so the counter orders
a tenant's changes by commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditRecord
from audit.services import audit_build, pii_keys
from iam_project.db.copy import copy_insert
from outbox.events import EVENT_TYPES
from outbox.services import event_build, events_record

ACTIONS = {"Created": "create", "Deleted": "delete"}
REVISION_BUMP = """
    INSERT INTO tenants_tenantrevision (tenant_id, value) SELECT id, 1 FROM unnest(%s::uuid[]) AS id
    ON CONFLICT (tenant_id) DO UPDATE SET value = tenants_tenantrevision.value + 1
"""


def record_change(
    *,
    event_type: str,
    tenant_id: UUID,
    aggregate_id: UUID,
    aggregate_version: int,
    data: dict[str, Any],
    before: dict[str, Any] | None = None,
    object_repr: str = "",
) -> None:
    """Write the event (``data`` = the new state) and the audit record (``before`` → ``data``)."""
    record_changes([Change(event_type, tenant_id, aggregate_id, aggregate_version, data, before, object_repr)])


def _invalidate_on_commit(aggregate_type: str, tenant_id: UUID, data: dict, before: dict | None) -> None:
    """Drop what the PIP cache holds about the change, once it is committed."""
    from resolver import cache as pip_cache

    if not pip_cache.enabled():
        return
    if aggregate_type == "user":
        external_ids = sorted({data.get("external_id"), (before or {}).get("external_id")} - {None})
        transaction.on_commit(lambda: pip_cache.invalidate_subjects(tenant_id, external_ids))
    else:
        slugs = sorted({data.get("slug"), (before or {}).get("slug")} - {None}) if aggregate_type == "tenant" else []
        transaction.on_commit(lambda: pip_cache.invalidate_tenant(tenant_id, slugs))


def _bump_revisions(tenant_ids: list[UUID]) -> None:
    """+1 on each tenant's change counter, held locked until the transaction ends.

    A second writer of the same tenant waits here for the first one's commit, so the committed
    values follow commit order (what a wall clock taken before commit cannot do). Tenants in sorted
    order: two multi-tenant writes cannot deadlock on the counters.
    """
    with connection.cursor() as cursor:
        cursor.execute(REVISION_BUMP, [tenant_ids])


@dataclass(frozen=True)
class Change:
    """One change of a bulk write: the same fields as :func:`record_change` takes."""

    event_type: str
    tenant_id: UUID
    aggregate_id: UUID
    aggregate_version: int
    data: dict[str, Any]
    before: dict[str, Any] | None = None
    object_repr: str = ""


def record_changes(changes: list[Change]) -> None:
    """One event and one audit record per change: single INSERTs for one change, COPY for many."""
    if not changes:
        return
    pii_by_tenant: dict[UUID, set[str]] = {}
    events, audits = [], []
    for change in changes:
        row = event_build(
            event_type=change.event_type,
            tenant_id=change.tenant_id,
            aggregate_id=change.aggregate_id,
            aggregate_version=change.aggregate_version,
            data=change.data,
        )
        events.append(row)
        carries_attributes = (change.before or {}).get("attributes") or change.data.get("attributes")
        if carries_attributes and change.tenant_id not in pii_by_tenant:
            pii_by_tenant[change.tenant_id] = pii_keys(change.tenant_id)
        action = next((a for suffix, a in ACTIONS.items() if change.event_type.endswith(suffix)), "update")
        audits.append(
            audit_build(
                action=action,
                object_type=EVENT_TYPES[change.event_type].aggregate_type,
                object_id=change.aggregate_id,
                tenant_id=change.tenant_id,
                before=change.before,
                after=None if action == "delete" else change.data,
                pii=pii_by_tenant.get(change.tenant_id, set()),
                object_repr=change.object_repr,
                event_id=row.event_id,
            )
        )
        _invalidate_on_commit(
            EVENT_TYPES[change.event_type].aggregate_type, change.tenant_id, change.data, change.before
        )
    events_record(events)
    _bump_revisions(sorted({change.tenant_id for change in changes}, key=str))
    if len(audits) == 1:
        audits[0].save(force_insert=True)
        return
    now = timezone.now()
    for audit in audits:
        audit.at = now
    copy_insert(AuditRecord, audits)
