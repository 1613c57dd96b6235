"""The first steps of a service that changes a row's fields: refuse the fields it may not change,
assign those whose value differs; and PUT as such a change."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from core.errors import FieldError, ValidationFailed


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
