"""Typed attribute search: a parsed query (:mod:`attributes.query`) checked against a tenant's definitions
and compiled to a Django ``Q`` over an ``attributes`` JSONB column.

The SQL is shaped for the indexes: equality, ``in`` and list membership are JSONB containment
(``attributes @> '{"k": v}'``, served by the GIN ``jsonb_path_ops`` index); range, prefix, ``exists``
and ``missing`` compare :func:`typed_expression` — the same expression the per-key btree index of a
*searchable* definition is built on (:mod:`attributes.search_indexes`). The typed expressions are
SQL functions (migration ``attributes.0002``) that return NULL for a value of another type, so a key
that another tenant types differently never makes a cast fail.

NOT is complement: ``NOT clearance ge 3`` also finds the subjects that have no clearance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import (
    DateField,
    DateTimeField,
    DecimalField,
    Expression,
    Field,
    Func,
    Q,
    TextField,
    Value,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.lookups import (
    Contains,
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Lookup,
    StartsWith,
)

from attributes.models import AttributeDefinition
from attributes.query import AllOf, AnyOf, Condition, Node, Not, QueryError
from attributes.validation import validate_value
from core.errors import FieldError, ValidationFailed

Type = AttributeDefinition.Type
FIELD = "attributes"
_COMMON = {"eq", "ne", "in", "exists", "missing"}
_RANGE = {"lt", "le", "gt", "ge", "between"}
OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    Type.STRING: frozenset(_COMMON | {"contains", "startswith"}),
    Type.ENUM: frozenset(_COMMON | {"contains", "startswith"}),
    Type.INTEGER: frozenset(_COMMON | _RANGE),
    Type.NUMBER: frozenset(_COMMON | _RANGE),
    Type.DATE: frozenset(_COMMON | _RANGE),
    Type.DATETIME: frozenset(_COMMON | _RANGE),
    Type.BOOLEAN: frozenset(_COMMON),
    Type.STRING_LIST: frozenset(_COMMON | {"has", "any", "all"}),
}
#: The SQL function (migration attributes.0002) each type's typed expression calls; text types use lower().
TYPED_FUNCTION: dict[str, tuple[str, type[Field[Any, Any]]]] = {
    Type.INTEGER: ("iam_attr_numeric", DecimalField),
    Type.NUMBER: ("iam_attr_numeric", DecimalField),
    Type.DATE: ("iam_attr_date", DateField),
    Type.DATETIME: ("iam_attr_timestamptz", DateTimeField),
}
TEXT_TYPES = (Type.STRING, Type.ENUM)
# Where equal typed values are equal stored values (JSON numbers compare as numbers, a date is stored
# as YYYY-MM-DD): an equality is the typed expression's alone. A string's expression is lower-cased
# and a date-time's is its instant, so there containment keeps ``eq`` exact.
NUMERIC_OR_DATE = (Type.INTEGER, Type.NUMBER, Type.DATE)
ORDERABLE_TYPES = (*TYPED_FUNCTION, *TEXT_TYPES, Type.BOOLEAN)
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_NUMBER = re.compile(r"^-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?$")


def typed_expression(definition: AttributeDefinition) -> Expression | None:
    """The indexable expression of a key: typed for numbers and dates, lower-cased text for strings."""
    if definition.type in TYPED_FUNCTION:
        function, output = TYPED_FUNCTION[definition.type]
        return Func(KeyTransform(definition.key, FIELD), function=function, output_field=output())
    if definition.type in TEXT_TYPES:
        return Func(KeyTextTransform(definition.key, FIELD), function="lower", output_field=TextField())
    return None


def sort_expression(definition: AttributeDefinition) -> Expression:
    """What ``ordering=attr.<key>`` sorts by: the typed expression, or the raw text of a boolean."""
    expression = typed_expression(definition)
    if expression is not None:
        return expression
    return Func(KeyTextTransform(definition.key, FIELD), function="", output_field=TextField())


def _fail(pointer: str, rule: str, detail: str) -> ValidationFailed:
    return ValidationFailed([FieldError(pointer, rule, detail)])


def _typed_value(definition: AttributeDefinition, raw: str, pointer: str, *, op: str) -> Any:
    """``raw`` read as the attribute's type (a JSON value for containment, a Python value for ranges)."""
    kind = definition.type
    value: Any = raw
    if kind == Type.INTEGER:
        if not _INTEGER.match(raw):
            raise _fail(pointer, "type", f"{raw[:40]!r} is not an integer")
        value = int(raw)
    elif kind == Type.NUMBER:
        if not _NUMBER.match(raw):
            raise _fail(pointer, "type", f"{raw[:40]!r} is not a number")
        value = float(raw)
        if value.is_integer() and abs(value) < 2**53:
            value = int(value)
    elif kind == Type.BOOLEAN:
        if raw not in ("true", "false"):
            raise _fail(pointer, "type", "must be true or false")
        value = raw == "true"
    if kind == Type.STRING_LIST or op in ("contains", "startswith"):
        check = AttributeDefinition(key=definition.key, type=Type.STRING)
    else:
        check = definition
    clean, errors = validate_value(check, value, pointer)
    rules = ("type", "enum") if kind == Type.ENUM else ("type",)
    errors = [error for error in errors if error.rule in rules]
    if errors:
        raise ValidationFailed(errors[:1])
    return clean


def _python_value(definition: AttributeDefinition, value: Any) -> Any:
    """A clean value as the typed expression's Python type (for range comparisons)."""
    if definition.type == Type.DATE:
        return date.fromisoformat(value)
    if definition.type == Type.DATETIME:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return Decimal(str(value))


class Compiler:
    """Compiles conditions for one tenant's definitions; ``pointer`` names the parameter in errors."""

    def __init__(self, definitions: Iterable[AttributeDefinition]) -> None:
        self.definitions = {definition.key: definition for definition in definitions}

    def definition(self, key: str, pointer: str) -> AttributeDefinition:
        definition = self.definitions.get(key)
        if definition is None:
            raise _fail(pointer, "unknown", f"no attribute definition {key!r} for this tenant")
        return definition

    def compile(self, node: Node, pointer: str, *, negate: bool = False) -> Q:
        """``node`` as a Q; NOT is pushed down to the conditions (De Morgan)."""
        if isinstance(node, Not):
            return self.compile(node.part, pointer, negate=not negate)
        if isinstance(node, AllOf | AnyOf):
            parts = [self.compile(part, pointer, negate=negate) for part in node.parts]
            conjunction = isinstance(node, AllOf) != negate
            combined = parts[0]
            for part in parts[1:]:
                combined = (combined & part) if conjunction else (combined | part)
            return combined
        return self.condition(node, pointer, negate=negate)

    def condition(self, condition: Condition, pointer: str, *, negate: bool = False) -> Q:
        definition = self.definition(condition.key, pointer)
        op = condition.op
        if op not in OPERATORS_BY_TYPE[definition.type]:
            allowed = ", ".join(sorted(OPERATORS_BY_TYPE[definition.type]))
            raise _fail(
                pointer, "operator", f"{op!r} does not apply to {definition.type} {condition.key!r}; use {allowed}"
            )
        if op == "between" and len(condition.values) != 2:
            raise _fail(pointer, "between", "between takes two values: the lower and the upper bound")
        if op not in ("in", "any", "all", "between") and len(condition.values) > 1:
            raise _fail(pointer, "value", f"{op} takes one value")
        values = [_typed_value(definition, raw, pointer, op=op) for raw in condition.values]
        positive, total = self._positive(definition, op, values)
        if not negate:
            return positive
        # complement: a condition that is NULL where the key is missing is widened by the missing ones
        return ~positive if total else (~positive | self._missing(definition))

    def _missing(self, definition: AttributeDefinition) -> Q:
        expression = typed_expression(definition)
        if expression is None:
            return ~Q(**{f"{FIELD}__has_key": definition.key})
        return Q(IsNull(expression, True))

    def _positive(self, definition: AttributeDefinition, op: str, values: list[Any]) -> tuple[Q, bool]:
        """The condition's Q and whether it is total (never NULL, so that NOT is plain negation)."""
        key, kind = definition.key, definition.type

        def contains(value: Any) -> Q:
            return Q(**{f"{FIELD}__contains": {key: [value] if kind == Type.STRING_LIST else value}})

        if op == "eq" and _indexed(definition):
            if definition.type in NUMERIC_OR_DATE:  # the typed value is the stored one: the key's index alone
                return self._typed_equality(definition, values[0]), False
            return contains(values[0]) & self._typed_equality(definition, values[0]), True
        if op in ("eq", "has"):
            return contains(values[0]), True
        if op in ("in", "any"):
            combined = contains(values[0])
            for value in values[1:]:
                combined |= contains(value)
            return combined, True
        if op == "all":
            return Q(**{f"{FIELD}__contains": {key: list(values)}}), True
        if op == "exists":
            return ~self._missing(definition), True
        if op == "missing":
            return self._missing(definition), True
        if op == "ne":
            return ~contains(values[0]) & ~self._missing(definition), False
        expression = typed_expression(definition)
        assert expression is not None  # the operator tables allow ranges and text operators only with one
        if op in ("contains", "startswith"):
            needle = str(values[0]).lower()
            text_lookup: type[Lookup[Any]] = StartsWith if op == "startswith" else Contains
            return Q(text_lookup(expression, needle)), False  # LIKE 'x%' / '%x%', wildcards in the value escaped
        bounds = [Value(_python_value(definition, value), output_field=expression.output_field) for value in values]
        if op == "between" and _indexed(definition) and bounds[0].value == bounds[1].value:
            return Q(Exact(expression, bounds[0])), False  # the key's index, in page order (below)
        if op == "between":
            return Q(GreaterThanOrEqual(expression, bounds[0])) & Q(LessThanOrEqual(expression, bounds[1])), False
        lookup = {"lt": LessThan, "le": LessThanOrEqual, "gt": GreaterThan, "ge": GreaterThanOrEqual}[op]
        return Q(lookup(expression, bounds[0])), False

    def _typed_equality(self, definition: AttributeDefinition, value: Any) -> Q:
        """The typed expression equal to ``value``, for a searchable key: PostgreSQL can then read the
        key's index on ``(expression, created_at)``, which holds the matches in page order (a first
        page reads 51 rows, however common the value), and estimate the matches from the
        expression's statistics."""
        expression = typed_expression(definition)
        assert expression is not None, "searchable applies only to keys with a typed expression"
        if definition.type in TEXT_TYPES:
            return Q(Exact(expression, Value(str(value).lower(), output_field=TextField())))
        return Q(Exact(expression, Value(_python_value(definition, value), output_field=expression.output_field)))


def _indexed(definition: AttributeDefinition) -> bool:
    """Whether the key's search index is built (``search_ready``, annotated by
    ``attributes.selectors.definitions_for``): until then an equality stays containment, which the
    GIN index serves, rather than a typed comparison no index serves yet."""
    return definition.searchable and bool(getattr(definition, "search_ready", False))


def query_error(pointer: str, error: QueryError) -> ValidationFailed:
    return _fail(pointer, error.rule, error.detail)
