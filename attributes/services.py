"""Writes to attribute definitions (the per-tenant schema), each with its event.

A definition change never leaves stored values invalid: a stricter constraint, a new required
attribute or a deletion that existing values contradict is refused with a 409 naming how many
subjects are in the way.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Model, QuerySet

from attributes import holders
from attributes.effective_rules import effective_rules_check
from attributes.models import KEY_PATTERN, AttributeDefinition
from attributes.search_indexes import index_names as search_index_names
from attributes.tasks import drop_search_index_task, sync_search_index_task
from attributes.validation import UnsupportedPattern, compiled, validate_value
from core.db.locking import locked_for_write, save_or_conflict
from core.errors import Conflict, FieldError, ValidationFailed
from core.guards import domain_write
from outbox.changes import Aggregate, record_changes, row_state

Type = AttributeDefinition.Type
CONSTRAINT_FIELDS = ("required", "allowed_values", "pattern", "min_value", "max_value", "max_length", "max_items")
UPDATABLE_FIELDS = (*CONSTRAINT_FIELDS, "default", "merge", "description", "pii", "searchable")
SEARCHABLE_TYPES = (Type.INTEGER, Type.NUMBER, Type.DATE, Type.DATETIME, Type.STRING, Type.ENUM)
IMMUTABLE_FIELDS = ("key", "target", "type")
#: A definition's fields in its events, after ``id`` and ``tenant_id``.
EVENT_FIELDS = (*IMMUTABLE_FIELDS, *UPDATABLE_FIELDS, "version")


def _plain_number(value: float | int | None) -> float | int | None:
    """Bounds are stored as floats: an integral bound reads back as the integer it was given."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def definition_data(definition: AttributeDefinition) -> dict[str, Any]:
    data = row_state(definition, EVENT_FIELDS)
    data["min_value"], data["max_value"] = _plain_number(definition.min_value), _plain_number(definition.max_value)
    return data


DEFINITIONS = Aggregate[AttributeDefinition]("AttributeDefinition", definition_data, lambda definition: definition.key)


def definition_check(definition: AttributeDefinition) -> None:
    errors: list[FieldError] = []
    if not isinstance(definition.key, str) or not re.match(KEY_PATTERN, definition.key):
        errors.append(FieldError("/key", "key", "1-64 of a-z, 0-9 and '_', starting with a letter"))
    if definition.target not in AttributeDefinition.Target.values:
        errors.append(FieldError("/target", "enum", f"one of {', '.join(AttributeDefinition.Target.values)}"))
    if definition.type not in Type.values:
        errors.append(FieldError("/type", "enum", f"one of {', '.join(Type.values)}"))
    allowed = definition.allowed_values
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed or not all(isinstance(v, str) for v in allowed):
            errors.append(FieldError("/allowed_values", "type", "a non-empty list of strings"))
        elif definition.type not in (Type.STRING, Type.ENUM, Type.STRING_LIST):
            errors.append(FieldError("/allowed_values", "applies_to", "only for string, enum and string_list"))
        elif len(set(allowed)) != len(allowed):
            errors.append(FieldError("/allowed_values", "unique", "values must be unique"))
    if definition.type == Type.ENUM and not allowed:
        errors.append(FieldError("/allowed_values", "required", "an enum needs its allowed values"))
    if definition.pattern:
        if definition.type not in (Type.STRING, Type.STRING_LIST):
            errors.append(FieldError("/pattern", "applies_to", "only for string and string_list"))
        else:
            try:
                compiled(definition.pattern)
            except UnsupportedPattern as exc:
                errors.append(
                    FieldError(
                        "/pattern",
                        "pattern",
                        f"not a regular expression the service accepts ({exc}); RE2 syntax, without "
                        "backreferences or lookaround",
                    )
                )
    for name in ("min_value", "max_value"):
        if getattr(definition, name) is not None and definition.type not in (Type.INTEGER, Type.NUMBER):
            errors.append(FieldError(f"/{name}", "applies_to", "only for integer and number"))
    if (
        definition.min_value is not None
        and definition.max_value is not None
        and definition.min_value > definition.max_value
    ):
        errors.append(FieldError("/max_value", "min", "must not be below min_value"))
    if definition.max_length is not None and definition.type not in (Type.STRING, Type.STRING_LIST, Type.ENUM):
        errors.append(FieldError("/max_length", "applies_to", "only for string, enum and string_list"))
    if definition.max_items is not None and definition.type != Type.STRING_LIST:
        errors.append(FieldError("/max_items", "applies_to", "only for string_list"))
    if definition.searchable and definition.type not in SEARCHABLE_TYPES:
        errors.append(
            FieldError("/searchable", "applies_to", "only for integer, number, date, datetime, string and enum")
        )
    errors += effective_rules_check(definition)
    if len(definition.description or "") > 2000:
        errors.append(FieldError("/description", "max_length", "at most 2000 characters"))
    if errors:
        raise ValidationFailed(errors)


def _subject_sets(definition: AttributeDefinition) -> list[QuerySet[Any]]:
    return holders.subject_sets_of(definition.target, definition.tenant_id)


def _conflicting_subjects(definition: AttributeDefinition) -> int:
    """How many subjects hold a value (or lack a required one) that ``definition`` refuses."""
    missing = invalid = 0
    for subjects in _subject_sets(definition):
        missing += subjects.exclude(attributes__has_key=definition.key).count() if definition.required else 0
        holding = subjects.filter(attributes__has_key=definition.key).values_list("attributes", flat=True)
        for values in holding.iterator():
            _, errors = validate_value(definition, values[definition.key], f"/attributes/{definition.key}")
            invalid += bool(errors)
    return missing + invalid


def _sync_search_index(definition: AttributeDefinition) -> None:
    """Build (or drop) the key's search index in a worker once the change commits: CONCURRENTLY, outside it."""
    definition_id = str(definition.id)
    transaction.on_commit(lambda: sync_search_index_task.delay(definition_id), robust=True)


def _schema_changed(tenant_id: UUID) -> None:
    """Every definition change moves the tenant's schema version (part of the PIP's ETag)."""
    holders.schema_changed.send(sender=AttributeDefinition, tenant_id=tenant_id)


def definition_create(
    *, tenant: Model, key: str, type: str, target: str = "user", **fields: Any
) -> AttributeDefinition:
    unknown = set(fields) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationFailed([FieldError(f"/{name}", "unknown", "unknown field") for name in sorted(unknown)])
    definition = AttributeDefinition(tenant=tenant, key=key, type=type, target=target, **fields)  # type: ignore[misc]  # attributes sit below tenants, so the tenant comes typed as a Model
    definition_check(definition)
    with transaction.atomic(), domain_write():
        if definition.required and (count := _conflicting_subjects(definition)):
            raise Conflict(f"{count} existing {target}s have no value for the new required attribute {key!r}")
        save_or_conflict(
            definition, f"an attribute definition {key!r} already exists in this tenant", force_insert=True
        )
        _schema_changed(tenant.pk)
        record_changes([DEFINITIONS.created(definition)])
        if definition.searchable:
            _sync_search_index(definition)
    return definition


def definition_update(
    *, definition: AttributeDefinition, expected_version: int | None = None, **fields: Any
) -> AttributeDefinition:
    immutable = [name for name in IMMUTABLE_FIELDS if name in fields and fields[name] != getattr(definition, name)]
    unknown = set(fields) - set(UPDATABLE_FIELDS) - set(IMMUTABLE_FIELDS)
    if immutable or unknown:
        raise ValidationFailed(
            [FieldError(f"/{name}", "read_only", "cannot be changed; create a new definition") for name in immutable]
            + [FieldError(f"/{name}", "unknown", "unknown field") for name in sorted(unknown)]
        )
    with locked_for_write(definition, expected_version=expected_version) as locked:
        changed = [name for name in UPDATABLE_FIELDS if name in fields and getattr(locked, name) != fields[name]]
        if not changed:
            return locked
        before = definition_data(locked)
        for name in changed:
            setattr(locked, name, fields[name])
        definition_check(locked)
        if set(changed) & set(CONSTRAINT_FIELDS) and (count := _conflicting_subjects(locked)):
            raise Conflict(f"{count} existing {locked.target}s hold values that the changed definition refuses")
        locked.version += 1
        locked.save()
        _schema_changed(locked.tenant_id)
        record_changes([DEFINITIONS.updated(locked, before, changed)])
        if "searchable" in changed:
            _sync_search_index(locked)
    return locked


REPLACE_DEFAULTS = {
    "target": "user", "required": False, "allowed_values": None, "pattern": "", "min_value": None,
    "max_value": None, "max_length": None, "max_items": None, "description": "", "pii": False, "searchable": False,
    "default": None, "merge": "replace",
}  # fmt: skip


def definition_replace(
    *, definition: AttributeDefinition, expected_version: int | None = None, **fields: Any
) -> AttributeDefinition:
    """PUT: the definition becomes what is given; an absent field takes its default (``REPLACE_DEFAULTS``)."""
    return definition_update(definition=definition, expected_version=expected_version, **{**REPLACE_DEFAULTS, **fields})


def definition_delete(*, definition: AttributeDefinition, expected_version: int | None = None) -> None:
    with locked_for_write(definition, expected_version=expected_version) as locked:
        in_use = sum(s.filter(attributes__has_key=locked.key).count() for s in _subject_sets(locked))
        if in_use:
            raise Conflict(f"attribute {locked.key!r} is set on {in_use} {locked.target}s; remove the values first")
        deleted = DEFINITIONS.removed(locked)
        indexes = search_index_names(locked)
        locked.delete()
        for index in indexes:
            transaction.on_commit(partial(drop_search_index_task.delay, index), robust=True)
        _schema_changed(deleted.tenant_id)
        record_changes([deleted])
