"""The rules of a user's fields, in one place: single writes, the bulk import and the console's form
(through the services) all check a user with :func:`user_clean`. Each limit is read from the model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db.models import CharField

from attributes.models import AttributeDefinition
from attributes.validation import validate_attributes
from core.client_json import unstorable_text
from core.errors import FieldError, ValidationFailed
from users.models import User

USER_FIELDS = ("external_id", "email", "display_name", "status", "attributes")


def _max_length(name: str) -> int:
    """The limit of one of the user's text fields, as the model declares it."""
    field = User._meta.get_field(name)
    assert isinstance(field, CharField) and field.max_length is not None, f"User.{name} is a CharField with a limit"
    return field.max_length


EXTERNAL_ID_MAX = _max_length("external_id")
EMAIL_MAX = _max_length("email")
DISPLAY_NAME_MAX = _max_length("display_name")
_email = EmailValidator()


def validate_external_id(value: Any) -> list[FieldError]:
    if not isinstance(value, str) or not 1 <= len(value) <= EXTERNAL_ID_MAX:
        return [FieldError("/external_id", "length", f"must be 1-{EXTERNAL_ID_MAX} characters")]
    if not value.isprintable():
        return [FieldError("/external_id", "printable", "must contain printable characters only")]
    if value != value.strip():
        return [FieldError("/external_id", "whitespace", "must not start or end with whitespace")]
    return []


PROFILE_MAX_BYTES = 16 * 1024


def validate_profile(value: Any) -> dict[str, Any]:
    """A user's ``profile`` (what an identity provider says beyond our fields): a JSON object of at most
    ``PROFILE_MAX_BYTES`` that PostgreSQL can store. Its shape is the door's business (``scim/``)."""
    if not isinstance(value, dict):
        raise ValidationFailed([FieldError("/profile", "type", "the profile is an object")])
    unstorable = unstorable_text(value, "/profile")
    if unstorable is not None:
        raise ValidationFailed([FieldError(*unstorable)])
    if len(json.dumps(value, ensure_ascii=False).encode()) > PROFILE_MAX_BYTES:
        raise ValidationFailed([FieldError("/profile", "too_large", f"at most {PROFILE_MAX_BYTES} bytes of JSON")])
    return value


def _field_errors(values: Mapping[str, Any]) -> list[FieldError]:
    errors = validate_external_id(values["external_id"])
    email = values["email"]
    if not isinstance(email, str) or len(email) > EMAIL_MAX:
        errors.append(FieldError("/email", "type", f"a string of at most {EMAIL_MAX} characters"))
    elif email:
        try:
            _email(email)
        except ValidationError:
            errors.append(FieldError("/email", "email", "not a valid email address"))
    display_name = values["display_name"]
    if not isinstance(display_name, str) or len(display_name) > DISPLAY_NAME_MAX:
        errors.append(FieldError("/display_name", "max_length", f"a string of at most {DISPLAY_NAME_MAX} characters"))
    if values["status"] not in User.Status.values:
        errors.append(FieldError("/status", "enum", f"one of {', '.join(User.Status.values)}"))
    return errors


def user_clean(
    values: Mapping[str, Any], *, definitions: list[AttributeDefinition] | None, check_fields: bool = True
) -> dict[str, Any]:
    """``values`` checked, with the defaults of absent or empty fields; raises :class:`ValidationFailed`
    listing every broken rule. ``definitions`` None leaves the attributes unchecked (not being written);
    ``check_fields`` False checks only them (an update that changes no field)."""
    errors = [
        FieldError(f"/{name}", "unknown_field", "unknown field") for name in sorted(set(values) - set(USER_FIELDS))
    ]
    clean = {
        "external_id": values.get("external_id"),
        "email": values.get("email") or "",
        "display_name": values.get("display_name") or "",
        "status": values.get("status") or User.Status.ACTIVE,
        "attributes": values.get("attributes") or {},
    }
    if check_fields:
        errors += _field_errors(clean)
    if definitions is not None:
        try:
            clean["attributes"] = validate_attributes(definitions, clean["attributes"])
        except ValidationFailed as exc:
            errors += exc.errors
    if errors:
        raise ValidationFailed(errors)
    return clean
