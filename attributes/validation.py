"""Typed validation of attribute values against a tenant's definitions.

One function, :func:`validate_attributes`, serves every door (service, API, console form, import):
it returns the normalised values or raises :class:`ValidationFailed` listing every broken rule with
a JSON pointer (``/attributes/<key>``), the rule name and a sentence.

Rules: ``unknown`` key, ``required``, ``type``, ``enum`` (allowed values), ``pattern``, ``min``,
``max``, ``max_length``, ``max_items``, ``too_many`` (attributes per subject), ``too_large`` (bytes of
one value) and ``key`` (charset).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import re2
from django.conf import settings

from attributes.models import KEY_PATTERN, AttributeDefinition
from core.client_json import unstorable_text
from core.errors import FieldError, ValidationFailed

Type = AttributeDefinition.Type
DATE_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$")
KEY_RE = re.compile(KEY_PATTERN)


def _iso_date(value: str) -> str:
    date.fromisoformat(value)  # a ValueError for a day the calendar does not have
    return value


def _iso_datetime(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeForm:
    """How a date or date-time value is written: its shape, the sentence when it is not, its
    normalised form (``normalised`` raises ``ValueError`` for a value of the shape that is no time)."""

    shape: re.Pattern[str]
    expected: str
    noun: str
    normalised: Callable[[str], str]


TIME_FORMS: dict[str, TimeForm] = {
    Type.DATE: TimeForm(DATE_SHAPE, "must be a date as YYYY-MM-DD", "calendar date", _iso_date),
    Type.DATETIME: TimeForm(
        DATETIME_SHAPE,
        "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z",
        "date-time",
        _iso_datetime,
    ),
}


PATTERN_MAX_LENGTH = 500  # the model field's length too
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the caller, not to stderr
_RE2_OPTIONS.max_mem = 1 << 20  # bytes for one compiled pattern: refuses huge repetition counts


class UnsupportedPattern(ValueError):
    """A definition's ``pattern`` that the linear-time engine (RE2) cannot compile."""


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:  # an re2 pattern (google-re2 ships no types)
    """``pattern`` compiled by RE2: matching takes time linear in the value, whatever the pattern.

    Python's ``re`` backtracks, so a pattern such as ``^(a+)+$`` takes exponential time on a value it
    does not match (ReDoS). RE2 has no backreferences or lookaround; such patterns are refused
    (:class:`UnsupportedPattern`), as are patterns longer than ``PATTERN_MAX_LENGTH``.
    """
    if len(pattern) > PATTERN_MAX_LENGTH:
        raise UnsupportedPattern(f"at most {PATTERN_MAX_LENGTH} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsupportedPattern(reason) from None


# JSON's names for Python's types; bool before int (a bool is an int).
_JSON_TYPE_NAMES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "list"),
    (dict, "object"),
)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def validate_value(definition: AttributeDefinition, value: Any, pointer: str) -> tuple[Any, list[FieldError]]:
    """Check one value; return it normalised (dates as ISO strings) and the broken rules."""
    kind = definition.type
    errors: list[FieldError] = []

    def fail(rule: str, detail: str) -> tuple[Any, list[FieldError]]:
        errors.append(FieldError(pointer, rule, detail))
        return value, errors

    if kind in (Type.STRING, Type.ENUM):
        if not isinstance(value, str):
            return fail("type", f"must be a string, got {_type_name(value)}")
        errors.extend(_string_rules(definition, value, pointer))
        if kind == Type.ENUM and not definition.allowed_values:
            errors.append(FieldError(pointer, "enum", "the enum definition has no allowed values"))
        return value, errors
    if kind == Type.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            return fail("type", f"must be an integer, got {_type_name(value)}")
        errors.extend(_range_rules(definition, value, pointer))
        return value, errors
    if kind == Type.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return fail("type", f"must be a finite number, got {_type_name(value)}")
        errors.extend(_range_rules(definition, value, pointer))
        return value, errors
    if kind == Type.BOOLEAN:
        if not isinstance(value, bool):
            return fail("type", f"must be true or false, got {_type_name(value)}")
        return value, errors
    if kind in TIME_FORMS:
        form = TIME_FORMS[kind]
        if not isinstance(value, str) or not form.shape.match(value):
            return fail("type", form.expected)
        try:
            return form.normalised(value), errors
        except ValueError:
            return fail("type", f"{value!r} is not a valid {form.noun}")
    if kind == Type.STRING_LIST:
        if not isinstance(value, list):
            return fail("type", f"must be a list of strings, got {_type_name(value)}")
        if definition.max_items is not None and len(value) > definition.max_items:
            errors.append(FieldError(pointer, "max_items", f"at most {definition.max_items} items"))
        for index, item in enumerate(value):
            item_pointer = f"{pointer}/{index}"
            if not isinstance(item, str):
                errors.append(FieldError(item_pointer, "type", f"list items must be strings, got {_type_name(item)}"))
                continue
            errors.extend(_string_rules(definition, item, item_pointer))
        return value, errors
    return fail("type", f"unsupported attribute type {kind!r}")  # pragma: no cover - guarded by choices


def _string_rules(definition: AttributeDefinition, value: str, pointer: str) -> list[FieldError]:
    errors = []
    if definition.max_length is not None and len(value) > definition.max_length:
        errors.append(FieldError(pointer, "max_length", f"at most {definition.max_length} characters"))
    if definition.allowed_values and value not in definition.allowed_values:
        allowed = ", ".join(map(str, definition.allowed_values[:20]))
        errors.append(FieldError(pointer, "enum", f"{value!r} is not one of: {allowed}"))
    if definition.pattern:
        try:
            matched = compiled(definition.pattern).fullmatch(value) is not None
        except UnsupportedPattern:
            # Stored before patterns were checked with RE2: refuse values (fail closed) rather than
            # run the pattern with a backtracking engine.
            errors.append(
                FieldError(pointer, "pattern", "the definition's pattern is not supported; fix the definition")
            )
        else:
            if not matched:
                errors.append(FieldError(pointer, "pattern", f"must match the pattern {definition.pattern}"))
    return errors


def _range_rules(definition: AttributeDefinition, value: float, pointer: str) -> list[FieldError]:
    errors = []
    if definition.min_value is not None and value < definition.min_value:
        errors.append(FieldError(pointer, "min", f"must be at least {_number(definition.min_value)}"))
    if definition.max_value is not None and value > definition.max_value:
        errors.append(FieldError(pointer, "max", f"must be at most {_number(definition.max_value)}"))
    return errors


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate_attributes(
    definitions: Iterable[AttributeDefinition],
    values: Any,
    *,
    pointer_prefix: str = "/attributes",
) -> dict[str, Any]:
    """Validate a complete attribute map (after any merge) against ``definitions``.

    ``definitions`` are those of one tenant and one target. Returns the normalised map.
    """
    if not isinstance(values, Mapping):
        raise ValidationFailed(
            [FieldError(pointer_prefix, "type", f"attributes must be an object, got {_type_name(values)}")]
        )
    by_key = {definition.key: definition for definition in definitions}
    errors: list[FieldError] = []
    unstorable = unstorable_text(dict(values), pointer_prefix)
    if unstorable is not None:
        raise ValidationFailed([FieldError(*unstorable)])
    limit = settings.IAM_MAX_ATTRIBUTES_PER_SUBJECT
    if len(values) > limit:
        errors.append(FieldError(pointer_prefix, "too_many", f"at most {limit} attributes per subject"))
    value_limit = settings.IAM_MAX_ATTRIBUTE_VALUE_BYTES
    normalised: dict[str, Any] = {}
    for key, value in values.items():
        pointer = f"{pointer_prefix}/{_escape(key)}"
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors.append(FieldError(pointer, "key", "keys are 1-64 of a-z, 0-9 and '_', starting with a letter"))
            continue
        definition = by_key.get(key)
        if definition is None:
            errors.append(FieldError(pointer, "unknown", f"no attribute definition {key!r} for this tenant"))
            continue
        if value is None:
            continue  # a null value means "absent"; required-ness is checked below
        if len(json.dumps(value, ensure_ascii=False).encode()) > value_limit:
            errors.append(FieldError(pointer, "too_large", f"a value may take at most {value_limit} bytes of JSON"))
            continue
        clean, value_errors = validate_value(definition, value, pointer)
        errors.extend(value_errors)
        normalised[key] = clean
    for key, definition in by_key.items():
        if (
            definition.required
            and normalised.get(key) is None
            and f"{pointer_prefix}/{key}" not in {e.pointer for e in errors}
        ):
            errors.append(FieldError(f"{pointer_prefix}/{_escape(key)}", "required", f"attribute {key!r} is required"))
    if errors:
        raise ValidationFailed(errors)
    return normalised


def _escape(key: Any) -> str:
    """JSON-pointer escaping of one reference token (RFC 6901)."""
    return str(key).replace("~", "~0").replace("/", "~1")


def merge_attribute_patch(current: Mapping[str, Any], patch: Any) -> Any:
    """PATCH semantics for attribute maps: keys in ``patch`` replace, ``None`` removes a key."""
    if not isinstance(patch, Mapping):
        return patch  # validate_attributes names the type error
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def attributes_changed(
    current: Mapping[str, Any], patch: Any, *, merge: bool, definitions: Iterable[AttributeDefinition]
) -> dict[str, Any] | None:
    """The validated map after ``patch`` (replacing ``current``, or merged into it with ``None``
    removing a key); ``None`` when that leaves the values as they were."""
    new_values = validate_attributes(definitions, merge_attribute_patch(current, patch) if merge else patch)
    return None if new_values == current else new_values
