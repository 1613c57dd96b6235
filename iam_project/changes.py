"""Recording a domain change: its outbox event and its audit record, in the change's transaction.

The one call every service makes after changing a row (``record_change``), so that no door can
write the event without the audit record or the other way round.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from audit.services import audit_record
from outbox.events import EVENT_TYPES
from outbox.services import event_record

ACTIONS = {"Created": "create", "Deleted": "delete"}


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
    row = event_record(
        event_type=event_type,
        tenant_id=tenant_id,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        data=data,
    )
    action = next((a for suffix, a in ACTIONS.items() if event_type.endswith(suffix)), "update")
    audit_record(
        action=action,
        object_type=EVENT_TYPES[event_type].aggregate_type,
        object_id=aggregate_id,
        tenant_id=tenant_id,
        before=before,
        after=None if action == "delete" else data,
        object_repr=object_repr,
        event_id=row.event_id,
    )
