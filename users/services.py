"""Writes to users (policy subjects): the change and its event in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from attributes.models import AttributeDefinition
from attributes.selectors import definitions_for
from attributes.validation import merge_attribute_patch, validate_attributes
from iam_project.changes import record_change
from iam_project.errors import Conflict, FieldError, PreconditionFailed, ValidationFailed
from iam_project.guards import domain_write
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
    attributes: dict | None = None,
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
    attributes: dict | None = None,
    merge_attributes: bool = False,
    **fields: Any,
) -> User:
    """Change fields and/or attributes (replace, or merge with ``None`` removing); one event if changed."""
    unknown = set(fields) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationFailed([FieldError(f"/{name}", "read_only", "cannot be changed") for name in sorted(unknown)])
    with transaction.atomic(), domain_write():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if expected_version is not None and locked.version != expected_version:
            raise PreconditionFailed(locked.version)
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
        locked = User.objects.select_for_update().get(pk=user.pk)
        if expected_version is not None and locked.version != expected_version:
            raise PreconditionFailed(locked.version)
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
