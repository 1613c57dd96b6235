"""Writes to users (policy subjects): the change and its event in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import merge_attribute_patch, validate_attributes
from core.db.copy import copy_insert
from core.db.locking import lock_for_write
from core.errors import Conflict, FieldError, ValidationFailed
from core.guards import domain_write
from outbox.changes import Change, record_change, record_changes
from tenants.models import Tenant
from users.models import User

UPDATABLE_FIELDS = ("external_id", "email", "display_name", "status")


def user_data(user: User) -> dict[str, Any]:
    """The state of a user as events carry it."""
    return {
        "id": str(user.id),
        "tenant_id": str(user.tenant_id),
        "external_id": user.external_id,
        "email": user.email,
        "display_name": user.display_name,
        "status": user.status,
        "attributes": user.attributes,
        "version": user.version,
    }


def validate_external_id(value: Any) -> list[FieldError]:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        return [FieldError("/external_id", "length", "must be 1-255 characters")]
    if not value.isprintable():
        return [FieldError("/external_id", "printable", "must contain printable characters only")]
    if value != value.strip():
        return [FieldError("/external_id", "whitespace", "must not start or end with whitespace")]
    return []


def _clean(user: User) -> None:
    errors = validate_external_id(user.external_id)
    try:
        user.full_clean(
            exclude=["attributes", "tenant", "external_id"], validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        errors += [FieldError(f"/{field}", "invalid", " ".join(msgs)) for field, msgs in exc.message_dict.items()]
    if errors:
        raise ValidationFailed(errors)


def _user_definitions(tenant_id: Any) -> list[AttributeDefinition]:
    return definitions_for(tenant_id=tenant_id, target=AttributeDefinition.Target.USER)


def user_create(
    *,
    tenant: Tenant,
    external_id: str,
    email: str = "",
    display_name: str = "",
    status: str = User.Status.ACTIVE,
    attributes: dict[str, Any] | None = None,
) -> User:
    user = User(
        tenant=tenant, external_id=external_id, email=email, display_name=display_name, status=status, attributes={}
    )
    errors: list[FieldError] = []
    try:
        _clean(user)
    except ValidationFailed as exc:
        errors += exc.errors
    try:
        user.attributes = validate_attributes(_user_definitions(tenant.id), attributes or {})
    except ValidationFailed as exc:
        errors += exc.errors
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic(), domain_write():
        try:
            with transaction.atomic():
                user.save(force_insert=True)
        except IntegrityError:
            raise Conflict(f"a user with external_id {external_id!r} already exists in this tenant") from None
        record_change(
            event_type="UserCreated",
            tenant_id=tenant.id,
            aggregate_id=user.id,
            aggregate_version=user.version,
            data=user_data(user),
            object_repr=user.external_id,
        )
    return user


def user_update(
    *,
    user: User,
    expected_version: int | None = None,
    attributes: dict[str, Any] | None = None,
    merge_attributes: bool = False,
    **fields: Any,
) -> User:
    """Change fields and/or attributes (replace, or merge with ``None`` removing); one event if changed."""
    unknown = set(fields) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationFailed([FieldError(f"/{name}", "read_only", "cannot be changed") for name in sorted(unknown)])
    with transaction.atomic(), domain_write():
        locked = lock_for_write(user, expected_version=expected_version)
        before = user_data(locked)
        changed = [name for name, value in fields.items() if getattr(locked, name) != value]
        for name in changed:
            setattr(locked, name, fields[name])
        errors: list[FieldError] = []
        if changed:
            try:
                _clean(locked)
            except ValidationFailed as exc:
                errors += exc.errors
        if attributes is not None:
            new_values = merge_attribute_patch(locked.attributes, attributes) if merge_attributes else attributes
            try:
                new_values = validate_attributes(_user_definitions(locked.tenant_id), new_values)
            except ValidationFailed as exc:
                errors += exc.errors
            else:
                if new_values != locked.attributes:
                    locked.attributes = new_values
                    changed.append("attributes")
        if errors:
            raise ValidationFailed(errors)
        if not changed:
            return locked
        locked.version += 1
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError:
            raise Conflict(f"a user with external_id {locked.external_id!r} already exists in this tenant") from None
        record_change(
            event_type="UserAttributesChanged" if changed == ["attributes"] else "UserUpdated",
            tenant_id=locked.tenant_id,
            aggregate_id=locked.id,
            aggregate_version=locked.version,
            data={**user_data(locked), "changed": changed},
            before=before,
            object_repr=locked.external_id,
        )
    return locked


def user_delete(*, user: User, expected_version: int | None = None) -> None:
    with transaction.atomic(), domain_write():
        locked = lock_for_write(user, expected_version=expected_version)
        data = user_data(locked)
        version = locked.version + 1
        user_id, tenant_id = locked.id, locked.tenant_id
        locked.delete()
        record_change(
            event_type="UserDeleted",
            tenant_id=tenant_id,
            aggregate_id=user_id,
            aggregate_version=version,
            data={**data, "version": version},
            before=data,
            object_repr=data["external_id"],
        )


@dataclass
class UpsertReport:
    """What a bulk upsert did: counts, and each invalid row's line number, external id and errors."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    errors: list[tuple[int, str, list[FieldError]]] = field(default_factory=list)

    def add(self, other: UpsertReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.invalid += other.invalid
        self.errors.extend(other.errors)


ROW_FIELDS = {"external_id", "email", "display_name", "status", "attributes"}
_email = EmailValidator()


def _row_errors(row: Any, definitions: list[AttributeDefinition]) -> tuple[dict[str, Any] | None, list[FieldError]]:
    if not isinstance(row, dict):
        return None, [FieldError("/", "type", "a row is an object")]
    errors = [FieldError(f"/{name}", "unknown_field", "unknown field") for name in sorted(set(row) - ROW_FIELDS)]
    external_id = row.get("external_id")
    errors += validate_external_id(external_id)
    email = row.get("email") or ""
    if not isinstance(email, str) or len(email) > 254:
        errors.append(FieldError("/email", "type", "a string of at most 254 characters"))
    elif email:
        try:
            _email(email)
        except ValidationError:
            errors.append(FieldError("/email", "email", "not a valid email address"))
    display_name = row.get("display_name") or ""
    if not isinstance(display_name, str) or len(display_name) > 200:
        errors.append(FieldError("/display_name", "max_length", "a string of at most 200 characters"))
    status = row.get("status") or User.Status.ACTIVE
    if status not in User.Status.values:
        errors.append(FieldError("/status", "enum", f"one of {', '.join(User.Status.values)}"))
    attributes: dict[str, Any] = {}
    try:
        attributes = validate_attributes(definitions, row.get("attributes") or {})
    except ValidationFailed as exc:
        errors += exc.errors
    if errors:
        return None, errors
    clean = {
        "external_id": external_id,
        "email": email,
        "display_name": display_name,
        "status": status,
        "attributes": attributes,
    }
    return clean, []


def users_upsert(*, tenant: Tenant, rows: list[tuple[int, Any]], dry_run: bool = False) -> UpsertReport:
    """Create or update users by external id, validated like the API; one event per changed user.

    ``rows`` are (line number, row) pairs of one batch. Invalid rows are reported and skipped; the
    caller decides whether any invalid row aborts the whole import (its transaction). Unchanged rows
    write nothing and emit nothing.
    """
    report = UpsertReport()
    definitions = _user_definitions(tenant.id)
    clean_rows: dict[str, tuple[int, dict[str, Any]]] = {}
    for line, row in rows:
        clean, errors = _row_errors(row, definitions)
        if clean is not None and clean["external_id"] in clean_rows:
            errors = [FieldError("/external_id", "duplicate", f"also on line {clean_rows[clean['external_id']][0]}")]
        if errors:
            report.invalid += 1
            external_id = row.get("external_id") if isinstance(row, dict) else None
            report.errors.append((line, str(external_id or ""), errors))
            continue
        assert clean is not None, "a row without errors is clean"
        clean_rows[clean["external_id"]] = (line, clean)
    with transaction.atomic(), domain_write():
        existing = {
            user.external_id: user
            for user in User.objects.select_for_update().filter(tenant=tenant, external_id__in=list(clean_rows))
        }
        creates: list[User] = []
        updates: list[tuple[User, dict[str, Any], list[str]]] = []
        changes: list[Change] = []
        for external_id, (_, clean) in clean_rows.items():
            user = existing.get(external_id)
            if user is None:
                user = User(tenant=tenant, **clean)
                creates.append(user)
                continue
            changed = [
                name for name in ("email", "display_name", "status", "attributes") if getattr(user, name) != clean[name]
            ]
            if not changed:
                report.unchanged += 1
                continue
            before = user_data(user)
            for name in changed:
                setattr(user, name, clean[name])
            user.version += 1
            updates.append((user, before, changed))
        report.created, report.updated = len(creates), len(updates)
        if dry_run:
            return report
        now = timezone.now()
        for user in creates:
            user.created_at = user.updated_at = now
        copy_insert(User, creates)
        for user, _, _ in updates:
            user.updated_at = now
        if updates:
            User.objects.bulk_update(
                [user for user, _, _ in updates],
                ["email", "display_name", "status", "attributes", "version", "updated_at"],
                batch_size=500,
            )
        changes += [
            Change("UserCreated", tenant.id, user.id, user.version, user_data(user), None, user.external_id)
            for user in creates
        ]
        changes += [
            Change(
                "UserAttributesChanged" if changed == ["attributes"] else "UserUpdated",
                tenant.id,
                user.id,
                user.version,
                {**user_data(user), "changed": changed},
                before,
                user.external_id,
            )
            for user, before, changed in updates
        ]
        record_changes(changes)
    return report
