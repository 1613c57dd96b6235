"""The event-type registry and the CloudEvents 1.0 envelope of every domain event.

Every event type is declared here once; :func:`outbox.services.event_build` refuses an unknown
one, and :func:`check_registry` (run when the app loads) refuses a registry whose names do not
fit the subject scheme ``<prefix>.<tenant id>.<aggregate type>.<EventType>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class EventType:
    """A registered event type: its name, the type of aggregate it happens to (the subject's third
    token), and what it means (docs/events.md lists them)."""

    name: str
    aggregate_type: str
    description: str


@dataclass(frozen=True)
class AggregateEvent:
    """One event of one aggregate: its type's name, the tenant, the aggregate and its version after the
    change, and ``data``, the aggregate's new state."""

    event_type: str
    tenant_id: UUID
    aggregate_id: UUID
    aggregate_version: int
    data: dict[str, Any]


TENANT = "tenant"
USER = "user"
ATTRIBUTE_DEFINITION = "attribute_definition"
GROUP = "group"

EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        EventType("TenantCreated", TENANT, "A tenant was created."),
        EventType("TenantUpdated", TENANT, "A tenant's name, slug or status changed (attributes too, if with them)."),
        EventType("TenantAttributesChanged", TENANT, "Only a tenant's attribute values changed."),
        EventType("TenantDeleted", TENANT, "A tenant was soft-deleted: hidden everywhere, restorable until purged."),
        EventType("TenantRestored", TENANT, "A soft-deleted tenant was restored."),
        EventType("TenantPurged", TENANT, "A deleted tenant was purged with all its users and definitions."),
        EventType("UserCreated", USER, "A user (policy subject) was created."),
        EventType("UserUpdated", USER, "A user's fields changed (attributes too, if with them)."),
        EventType("UserAttributesChanged", USER, "Only a user's attribute values changed."),
        EventType("UserDeleted", USER, "A user was deleted."),
        EventType("GroupCreated", GROUP, "A group was created."),
        EventType("GroupUpdated", GROUP, "A group's key, name, external id, priority or attributes changed."),
        EventType("GroupDeleted", GROUP, "A group was deleted with its memberships."),
        EventType("GroupMembersAdded", GROUP, "Users and/or groups were added to a group (one bulk request)."),
        EventType("GroupMembersRemoved", GROUP, "Users and/or groups were removed from a group."),
        EventType("AttributeDefinitionCreated", ATTRIBUTE_DEFINITION, "An attribute definition was created."),
        EventType("AttributeDefinitionUpdated", ATTRIBUTE_DEFINITION, "An attribute definition changed."),
        EventType("AttributeDefinitionDeleted", ATTRIBUTE_DEFINITION, "An attribute definition was deleted."),
    )
}

_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
_AGGREGATE = re.compile(r"^[a-z_]+$")


def check_registry() -> None:
    for name, event in EVENT_TYPES.items():
        if name != event.name or not _NAME.match(name) or not _AGGREGATE.match(event.aggregate_type):
            raise ValueError(f"event type {name!r} does not fit the subject scheme")


def subject_for(prefix: str, tenant_id: UUID, event: EventType) -> str:
    return f"{prefix}.{tenant_id}.{event.aggregate_type}.{event.name}"


def envelope(
    *,
    event_id: UUID,
    event: EventType,
    source: str,
    time: datetime,
    tenant_id: UUID,
    aggregate_id: UUID,
    aggregate_version: int,
    data: dict[str, Any],
    replay_of: UUID | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode JSON envelope with our extension attributes."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": source,
        "type": event.name,
        "time": time.isoformat().replace("+00:00", "Z"),
        "subject": f"{event.aggregate_type}/{aggregate_id}",
        "datacontenttype": "application/json",
        "tenantid": str(tenant_id),
        "aggregatetype": event.aggregate_type,
        "aggregateid": str(aggregate_id),
        "aggregateversion": aggregate_version,
        "data": data,
    }
    if replay_of is not None:
        body["replayof"] = str(replay_of)
    return body
