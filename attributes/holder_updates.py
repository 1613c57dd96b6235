"""The end of every update of an attribute holder (a tenant, a user, a group): the attribute values
patched, and when anything changed, the version moved, the row saved and the change recorded."""

from __future__ import annotations

from typing import Any, TypeVar

from attributes.selectors import definitions_for
from attributes.validation import attributes_changed
from core.db.locking import save_or_conflict
from core.field_updates import Update
from core.guards import DomainModel
from outbox.changes import Aggregate, record_changes

H = TypeVar("H", bound=DomainModel)


def holder_updated(
    aggregate: Aggregate[H],
    locked: H,
    before: dict[str, Any],
    changed: list[str],
    conflict: str,
    update: Update | None = None,
    *,
    target: str = "",
) -> H:
    """``locked`` (read by ``locked_for_write``, its ``changed`` fields assigned) with the ``update``'s
    attributes (of a subject of kind ``target``) replacing its values, or merged into them (``None``
    removing a key); saved (a unique clash is a 409 saying ``conflict``) with one ``…Updated`` change
    if anything changed, else left alone."""
    holder: Any = locked  # every holder has ``attributes``; DomainModel does not declare it
    if update is not None and update.attributes is not None:
        definitions = definitions_for(tenant_id=aggregate.tenant_of(locked), target=target)
        new_values = attributes_changed(
            holder.attributes, update.attributes, merge=update.merge_attributes, definitions=definitions
        )
        if new_values is not None:
            holder.attributes = new_values
            changed.append("attributes")
    if changed:
        locked.version += 1
        save_or_conflict(locked, conflict)
        record_changes([aggregate.updated(locked, before, changed)])
    return locked
