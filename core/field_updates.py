"""The first steps of a service that changes a row's fields: refuse the fields it may not change,
assign those whose value differs."""

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
