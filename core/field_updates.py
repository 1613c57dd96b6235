"""The first steps of a service that changes a row's fields: split its keywords into options and
fields, refuse the fields it may not change, assign those whose value differs; and PUT as such a change."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from core.errors import FieldError, ValidationFailed


class UpdateOptions(TypedDict, total=False):
    """The keywords of every ``<aggregate>_update`` beside the fields: a service's own ``TypedDict``
    (``UserChanges``…) extends this one with the fields it may change, so callers are type-checked."""

    expected_version: int | None  # If-Match: the version the caller read (None: unconditional)
    attributes: dict[str, Any] | None  # attribute values: replace the map, or merge into it
    merge_attributes: bool  # merge ``attributes`` (a key set to None is removed)


@dataclass(frozen=True)
class Update:
    fields: dict[str, Any]
    expected_version: int | None = None
    attributes: dict[str, Any] | None = None
    merge_attributes: bool = False


def update_of(changes: Mapping[str, Any], kind: type[Any]) -> Update:
    """An ``<aggregate>_update``'s keywords split into options and fields; a field ``kind`` (the
    service's ``TypedDict``) does not name is a 400, whatever the caller passed at run time."""
    options = UpdateOptions.__annotations__
    fields = {name: value for name, value in changes.items() if name not in options}
    refuse_read_only(fields, set(kind.__annotations__) - set(options))
    return Update(
        fields, changes.get("expected_version"), changes.get("attributes"), bool(changes.get("merge_attributes"))
    )


def refuse_read_only(fields: Iterable[str], updatable: Collection[str]) -> None:
    """Each of ``fields`` outside ``updatable`` is a 400 (``read_only``, "cannot be changed")."""
    read_only = set(fields) - set(updatable)
    if read_only:
        raise ValidationFailed([FieldError(f"/{name}", "read_only", "cannot be changed") for name in sorted(read_only)])


def assign_changed(row: Any, fields: Mapping[str, Any]) -> list[str]:
    """Set on ``row`` each of ``fields`` whose value differs from the row's; their names, in order."""
    changed = [name for name, value in fields.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, fields[name])
    return changed


def replacement(
    attributes: dict[str, Any] | None, fields: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """PUT as the arguments of an update: a field absent from ``fields`` takes its value in ``defaults``,
    absent ``attributes`` are all removed."""
    return {"attributes": attributes if attributes is not None else {}, **defaults, **fields}
