"""Recording a domain change: its outbox event, its audit record and the tenant's revision, in the
change's transaction.

The one call every service makes after changing a row (``record_changes``, each change built by the
row's :class:`Aggregate`), so that no door can write the event without the audit record or the
other way round. It also counts the change in the tenant's ``TenantRevision`` (the OPA bundle's
ETag), under that row's lock, so the counter orders a tenant's changes by commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditRecord
from audit.services import audit_build, pii_keys
from core.db import replicas
from core.db.copy import copy_insert
from core.db.locking import save_or_conflict
from core.guards import DomainModel, domain_write
from outbox.events import EVENT_TYPES, AggregateEvent
from outbox.services import event_build, events_record

ACTIONS = {"Created": "create", "Deleted": "delete"}
REVISION_BUMP = """
    INSERT INTO tenants_tenantrevision (tenant_id, value) SELECT id, 1 FROM unnest(%s::uuid[]) AS id
    ON CONFLICT (tenant_id) DO UPDATE SET value = tenants_tenantrevision.value + 1
"""


ChangeListener = Callable[[str, UUID, dict[str, Any], dict[str, Any] | None], None]
_listeners: list[ChangeListener] = []


def on_change(listener: ChangeListener) -> ChangeListener:
    """Register ``listener(aggregate_type, tenant_id, data, before)``, called in the change's transaction.

    The read side registers here (``resolver.apps``) to learn of changes: the write path does not
    import it. A listener that acts on the commit schedules that with ``transaction.on_commit``.
    """
    _listeners.append(listener)
    return listener


PiiInEvents = Callable[[UUID], bool]
_pii_in_events: list[PiiInEvents] = []
REDACTED = {"redacted": True}


def pii_in_events_from(source: PiiInEvents) -> None:
    """Register ``source(tenant_id)`` → whether the tenant's events carry PII values (``tenants.apps``)."""
    _pii_in_events.append(source)


def event_data(data: dict[str, Any], pii: set[str], carried: bool) -> dict[str, Any]:
    """The event's ``data``: each PII-flagged value replaced by ``{"redacted": true}`` unless the
    tenant lets its events carry them (docs/events.md, "PII in events")."""
    if carried:
        return data
    if data.get("pii") is True and data.get("default") is not None and "key" in data:  # a PII definition
        return {**data, "default": dict(REDACTED)}
    attributes = data.get("attributes")
    if not pii or not isinstance(attributes, dict) or not pii.intersection(attributes):
        return data
    redacted = {key: dict(REDACTED) if key in pii and value is not None else value for key, value in attributes.items()}
    return {**data, "attributes": redacted}


def _bump_revisions(tenant_ids: list[UUID]) -> None:
    """+1 on each tenant's change counter, held locked until the transaction ends.

    A second writer of the same tenant waits here for the first one's commit, so the committed
    values follow commit order (what a wall clock taken before commit cannot do). Tenants in sorted
    order: two multi-tenant writes cannot deadlock on the counters.
    """
    with connection.cursor() as cursor:
        cursor.execute(REVISION_BUMP, [tenant_ids])


@dataclass(frozen=True)
class Change(AggregateEvent):
    """One change: its event (``data`` = the new state) and its audit record (``before`` → ``data``)."""

    before: dict[str, Any] | None = None
    object_repr: str = ""


R = TypeVar("R", bound=DomainModel)


def row_state(row: Any, names: Iterable[str]) -> dict[str, Any]:
    """A row as events carry it: its ``id`` and ``tenant_id`` as strings, then the fields ``names``."""
    return {"id": str(row.id), "tenant_id": str(row.tenant_id), **{name: getattr(row, name) for name in names}}


def _tenant_id(row: Any) -> UUID:
    return cast(UUID, row.tenant_id)


@dataclass(frozen=True)
class Aggregate(Generic[R]):
    """How the services record the changes of one kind of versioned row: the prefix of its event
    types (``User`` → ``UserCreated``…), its state as events carry it, its name in the audit log, its
    tenant, and whether a change of its attribute values alone is an ``…AttributesChanged``."""

    name: str
    state: Callable[[R], dict[str, Any]]
    label: Callable[[R], str]
    tenant_of: Callable[[R], UUID] = _tenant_id
    attributes_changed_event: bool = False

    def change(
        self,
        row: R,
        event: str,
        data: dict[str, Any],
        *,
        before: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> Change:
        """The change ``<name><event>`` of ``row`` at its version (or ``version``)."""
        tenant_id, label = self.tenant_of(row), self.label(row)
        return Change(
            f"{self.name}{event}", tenant_id, row.pk, row.version if version is None else version, data, before, label
        )

    def created(self, row: R) -> Change:
        return self.change(row, "Created", self.state(row))

    def insert(self, row: R, conflict: str) -> R:
        """Save the new ``row`` (a unique clash is a 409 saying ``conflict``) and record its ``…Created``,
        in one transaction."""
        with transaction.atomic(), domain_write():
            save_or_conflict(row, conflict, force_insert=True)
            record_changes([self.created(row)])
        return row

    def updated(self, row: R, before: dict[str, Any], changed: list[str]) -> Change:
        attributes_only = self.attributes_changed_event and changed == ["attributes"]
        event = "AttributesChanged" if attributes_only else "Updated"
        return self.change(row, event, {**self.state(row), "changed": changed}, before=before)

    def removed(self, row: R, event: str = "Deleted", **extra: Any) -> Change:
        """The change of removing ``row``, taken before it goes: its last state one version on, and ``extra``."""
        before, version = self.state(row), row.version + 1
        return self.change(row, event, {**before, "version": version, **extra}, before=before, version=version)


def record_changes(changes: list[Change]) -> None:
    """One event and one audit record per change: single INSERTs for one change, COPY for many."""
    if not changes:
        return
    replicas.note_write()  # the request's later reads and its consistency token follow this change
    pii_by_tenant: dict[UUID, set[str]] = {}
    carried: dict[UUID, bool] = {}
    events, audits = [], []
    for change in changes:
        carries_attributes = (change.before or {}).get("attributes") or change.data.get("attributes")
        if carries_attributes and change.tenant_id not in pii_by_tenant:
            pii_by_tenant[change.tenant_id] = pii_keys(change.tenant_id)
        pii = pii_by_tenant.get(change.tenant_id, set())
        pii_default = change.data.get("pii") is True and change.data.get("default") is not None
        if (pii or pii_default) and change.tenant_id not in carried:
            carried[change.tenant_id] = any(source(change.tenant_id) for source in _pii_in_events)
        row = event_build(replace(change, data=event_data(change.data, pii, carried.get(change.tenant_id, False))))
        events.append(row)
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
        for listener in _listeners:
            listener(EVENT_TYPES[change.event_type].aggregate_type, change.tenant_id, change.data, change.before)
    events_record(events)
    _bump_revisions(sorted({change.tenant_id for change in changes}, key=str))
    if len(audits) == 1:
        audits[0].save(force_insert=True)
        return
    now = timezone.now()
    for audit in audits:
        audit.at = now
    copy_insert(AuditRecord, audits)
