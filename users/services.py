"""Writes to users (policy subjects): the change and its event in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Unpack

from django.db import transaction
from django.utils import timezone

from attributes.holder_updates import holder_updated
from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import merge_attribute_patch
from core.db.copy import copy_insert
from core.db.locking import locked_for_write
from core.errors import FieldError, ValidationFailed
from core.field_updates import UpdateOptions, assign_changed, replacement, update_of
from core.guards import domain_write
from outbox.changes import Aggregate, Change, record_changes, row_state
from tenants.models import Tenant
from users.models import User
from users.validation import USER_FIELDS, user_clean, validate_profile


class UserChanges(UpdateOptions, total=False):
    """What ``user_update`` may change."""

    external_id: str
    email: str
    display_name: str
    status: str
    profile: dict[str, Any]


#: A user's fields in its events, after ``id`` and ``tenant_id``.
EVENT_FIELDS = ("external_id", "email", "display_name", "status", "attributes", "profile", "version")


def user_data(user: User) -> dict[str, Any]:
    """The state of a user as events carry it."""
    return row_state(user, EVENT_FIELDS)


USERS = Aggregate[User]("User", user_data, lambda user: user.external_id, attributes_changed_event=True)


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
    profile: dict[str, Any] | None = None,
) -> User:
    values = {"external_id": external_id, "email": email, "display_name": display_name, "status": status}
    clean = user_clean({**values, "attributes": attributes or {}}, definitions=_user_definitions(tenant.id))
    user = User(tenant=tenant, profile=validate_profile(profile or {}), **clean)
    return USERS.insert(user, f"a user with external_id {external_id!r} already exists in this tenant")


def user_update(*, user: User, **changes: Unpack[UserChanges]) -> User:
    """Change fields and/or attributes (replace, or merge with ``None`` removing); one event if changed."""
    update = update_of(changes, UserChanges)
    fields, attributes = update.fields, update.attributes
    if "profile" in fields:
        fields["profile"] = validate_profile(fields["profile"])
    with locked_for_write(user, expected_version=update.expected_version) as locked:
        before = user_data(locked)
        changed = assign_changed(locked, fields)
        if changed or attributes is not None:
            current = {name: getattr(locked, name) for name in USER_FIELDS}
            if attributes is not None:
                current["attributes"] = (
                    merge_attribute_patch(locked.attributes, attributes) if update.merge_attributes else attributes
                )
            definitions = _user_definitions(locked.tenant_id) if attributes is not None else None
            clean = user_clean(current, definitions=definitions, check_fields=bool(set(changed) - {"profile"}))
            for name in changed:
                if name != "profile":
                    setattr(locked, name, clean[name])
            if clean["attributes"] != locked.attributes:
                locked.attributes = clean["attributes"]
                changed.append("attributes")
        conflict = f"a user with external_id {locked.external_id!r} already exists in this tenant"
        return holder_updated(USERS, locked, before, changed, conflict)


REPLACE_DEFAULTS = {"email": "", "display_name": "", "status": User.Status.ACTIVE}


def user_replace(
    *, user: User, expected_version: int | None = None, attributes: dict[str, Any] | None = None, **fields: Any
) -> User:
    """PUT: the user becomes what is given; an absent field takes its default, absent attributes are removed."""
    return user_update(
        user=user, expected_version=expected_version, **replacement(attributes, fields, REPLACE_DEFAULTS)
    )


def user_delete(*, user: User, expected_version: int | None = None) -> None:
    with locked_for_write(user, expected_version=expected_version) as locked:
        deleted = USERS.removed(locked)
        locked.delete()
        record_changes([deleted])


@dataclass
class WriteCounts:
    """How many rows a bulk write created and updated (the imports' reports start with these)."""

    created: int = 0
    updated: int = 0


@dataclass
class UpsertReport(WriteCounts):
    """What a bulk upsert did: counts, and each invalid row's line number, external id and errors."""

    unchanged: int = 0
    invalid: int = 0
    errors: list[tuple[int, str, list[FieldError]]] = field(default_factory=list)

    def add(self, other: UpsertReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.invalid += other.invalid
        self.errors.extend(other.errors)


def _row_clean(row: Any, definitions: list[AttributeDefinition]) -> tuple[dict[str, Any] | None, list[FieldError]]:
    if not isinstance(row, dict):
        return None, [FieldError("/", "type", "a row is an object")]
    try:
        return user_clean(row, definitions=definitions), []
    except ValidationFailed as exc:
        return None, exc.errors


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
        clean, errors = _row_clean(row, definitions)
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
        changes += [USERS.created(user) for user in creates]
        changes += [USERS.updated(user, before, changed) for user, before, changed in updates]
        record_changes(changes)
    return report
